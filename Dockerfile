# Slim, non-root image of the gateway.
#   docker build -t tollgate .
#   docker run -p 8080:8080 -v tollgate-data:/var/lib/tollgate \
#     -v $PWD/my.toml:/etc/tollgate/tollgate.toml:ro tollgate
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY src src
COPY config config
COPY benches benches
RUN cargo build --release --locked --bin tollgate \
 && strip target/release/tollgate \
 && mkdir -p /out/var/lib/tollgate

# distroless/cc: glibc + libgcc only, no shell, runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/tollgate /usr/local/bin/tollgate
COPY --from=build /src/config/tollgate.toml /etc/tollgate/tollgate.toml
# The embedded store's directory, writable by the non-root user.
COPY --from=build --chown=65532:65532 /out/var/lib/tollgate /var/lib/tollgate
ENV TOLLGATE_CONFIG=/etc/tollgate/tollgate.toml \
    TOLLGATE_LISTEN=0.0.0.0:8080 \
    TOLLGATE_DATA=/var/lib/tollgate
VOLUME /var/lib/tollgate
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/tollgate"]
CMD ["serve"]
