//! A wrapper for secrets (provider keys) that never prints its content.

use std::fmt;

/// Holds a secret; `Debug` and `Display` print `*****` so a secret that ends up
/// in a log line or an error message by accident is still not leaked.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret itself; call sites are the few places that must send it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn never_prints() {
        let s = Secret::new("sk-live-123".to_string());
        assert_eq!(format!("{s:?} {s}"), "***** *****");
        assert_eq!(s.expose(), "sk-live-123");
    }
}
