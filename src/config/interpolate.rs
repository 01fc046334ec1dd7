//! `${VAR}` and `${VAR:-default}` in config strings.
//!
//! Interpolation runs on parsed TOML values, not on the file's text, so a value
//! containing quotes or newlines cannot change the file's structure, and an error
//! can name the field that referred to the missing variable.

/// Replaces every `${VAR}` / `${VAR:-default}` in `input`. `$$` is a literal `$`.
pub fn interpolate(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if !input.contains('$') {
        return Ok(input.to_owned());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| format!("unterminated `${{` in {input:?}"))?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid variable name {name:?} in `${{{expr}}}`"));
            }
            match (lookup(name).filter(|v| !v.is_empty() || default.is_none()), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err(format!(
                        "environment variable {name} is not set (write ${{{name}:-default}} to give a default)"
                    ))
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Interpolates every string in a TOML tree; errors carry the field path.
pub fn interpolate_tree(
    value: &mut toml::Value,
    path: &mut Vec<String>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), (String, String)> {
    match value {
        toml::Value::String(s) => {
            *s = interpolate(s, lookup).map_err(|e| (path.join("."), e))?;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                interpolate_tree(item, path, lookup)?;
                path.pop();
            }
        }
        toml::Value::Table(table) => {
            for (k, v) in table.iter_mut() {
                path.push(k.clone());
                interpolate_tree(v, path, lookup)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::interpolate;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("value".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_and_defaults() {
        assert_eq!(interpolate("a ${SET} b", &env).unwrap(), "a value b");
        assert_eq!(interpolate("${UNSET:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(interpolate("${EMPTY:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(interpolate("${EMPTY}", &env).unwrap(), "");
        assert_eq!(interpolate("${UNSET:-}", &env).unwrap(), "");
        assert_eq!(interpolate("cost $$5 $x", &env).unwrap(), "cost $5 $x");
    }

    #[test]
    fn reports_missing_and_malformed() {
        assert!(interpolate("${UNSET}", &env).unwrap_err().contains("UNSET is not set"));
        assert!(interpolate("${SET", &env).unwrap_err().contains("unterminated"));
        assert!(interpolate("${BAD-NAME}", &env).unwrap_err().contains("invalid variable name"));
    }
}
