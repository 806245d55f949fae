//! The `--pg` connection string of `layers --format postgis`, checked (pure):
//! no password in it, a schema name that needs no quoting, GDAL listing
//! options refused; and the redaction of libpq/GDAL messages that may echo a
//! connection string. Used by `config` (validation) and `layers` (the sink).

/// Errors of the PostGIS target.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum PgError {
    /// The value is not echoed: it may hold a password.
    #[error(
        "--pg does not start with `PG:`; pass e.g. --pg \"PG:host=db.example.org dbname=gis schema=mapillary\""
    )]
    NoPrefix,
    #[error(
        "--pg must not contain a password: every process on this machine can read the command line. \
         Remove it (`password=`, `sslpassword=`, or one inside another value) and give it by one of: \
         the PGPASSWORD environment variable, a line in ~/.pgpass \
         (host:port:dbname:user:password, mode 0600), or a service file entry \
         (PGSERVICE=name or service=name in --pg)"
    )]
    Password,
    #[error(
        "--pg: `dbname` holds a connection string or URI, which libpq would expand; write its \
         keyword=value pairs directly, e.g. --pg \"PG:host=db.example.org dbname=gis schema=mapillary\""
    )]
    Expanded,
    #[error(
        "--pg: URIs (`postgresql://...`) are not accepted; write keyword=value pairs, e.g. \
         --pg \"PG:host=db.example.org dbname=gis schema=mapillary\""
    )]
    Uri,
    #[error(
        "--pg: cannot read `{0}`: {1}; write keyword=value pairs separated by spaces, \
         single-quoting values that contain spaces"
    )]
    Syntax(String, String),
    #[error(
        "--pg: `{0}=` is a GDAL listing option that would change which schema is written; use schema=NAME"
    )]
    GdalKey(String),
    #[error(
        "--pg: schema `{0}` is not accepted; use 1 to {SCHEMA_MAX} lowercase letters, digits and `_`, \
         starting with a letter or `_` (e.g. schema=mapillary)"
    )]
    Schema(String),
}

/// The longest schema name accepted (PostgreSQL cuts names at 63 bytes).
pub(crate) const SCHEMA_MAX: usize = 63;

/// Where `layers` writes: the libpq connection (without `schema`) and the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PgTarget {
    /// libpq keyword/value pairs as given, in order, `schema` removed.
    pairs: Vec<(String, String)>,
    schema: String,
}

impl PgTarget {
    /// Parses `--pg "PG:host=... dbname=... schema=..."`. `schema` defaults to `public`.
    pub(crate) fn parse(s: &str) -> Result<Self, PgError> {
        let Some(rest) = s.strip_prefix("PG:").or_else(|| s.strip_prefix("pg:")) else {
            return Err(PgError::NoPrefix);
        };
        let rest = rest.trim();
        if let Some(uri) = uri_body(rest) {
            return Err(if uri_has_secret(uri) {
                PgError::Password
            } else {
                PgError::Uri
            });
        }
        let mut pairs = conninfo_pairs(rest).map_err(|why| PgError::Syntax(redact(s, &[]), why))?;
        let secret_key = |k: &str| k == "password" || k == "sslpassword";
        let hides_secret =
            |v: &str| redact_password_pairs(v) != v || uri_body(v).is_some_and(uri_has_secret);
        if pairs.iter().any(|(k, v)| secret_key(k) || hides_secret(v)) {
            return Err(PgError::Password);
        }
        // libpq expands a dbname holding `=` or a URI into a whole connection string.
        if pairs
            .iter()
            .any(|(k, v)| k == "dbname" && (v.contains('=') || uri_body(v).is_some()))
        {
            return Err(PgError::Expanded);
        }
        if let Some((k, _)) = pairs
            .iter()
            .find(|(k, _)| matches!(k.as_str(), "schemas" | "active_schema" | "tables"))
        {
            return Err(PgError::GdalKey(k.clone()));
        }
        let schema = match pairs.iter().rposition(|(k, _)| k == "schema") {
            Some(i) => pairs.remove(i).1,
            None => "public".to_string(),
        };
        pairs.retain(|(k, _)| k != "schema");
        check_schema(&schema)?;
        Ok(Self { pairs, schema })
    }

    /// The schema the tables go to.
    pub(crate) fn schema(&self) -> &str {
        &self.schema
    }

    /// The GDAL dataset name: `PG:` and the libpq pairs, each value quoted.
    pub(crate) fn gdal_name(&self) -> String {
        let mut s = String::from("PG:");
        for (i, (k, v)) in self.pairs.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(k);
            s.push_str("='");
            for c in v.chars() {
                if c == '\'' || c == '\\' {
                    s.push('\\');
                }
                s.push(c);
            }
            s.push('\'');
        }
        s
    }

    /// The `pg_isready` command line that probes this server (host, port
    /// and database as given; libpq's environment fills the rest).
    pub(crate) fn probe(&self) -> String {
        let mut cmd = String::from("pg_isready");
        for (key, flag) in [
            ("host", "-h"),
            ("port", "-p"),
            ("dbname", "-d"),
            ("user", "-U"),
        ] {
            if let Some((_, v)) = self.pairs.iter().rev().find(|(k, _)| k == key) {
                let plain = v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-/:".contains(c));
                if plain && !v.is_empty() {
                    cmd.push_str(&format!(" {flag} {v}"));
                } else {
                    cmd.push_str(&format!(" {flag} '{}'", v.replace('\'', "'\\''")));
                }
            }
        }
        cmd
    }

    /// Where the connection goes, for messages: host, port, database, user
    /// and service, from `--pg` or else libpq's environment (`env`), else
    /// libpq's defaults.
    pub(crate) fn describe(&self, env: impl Fn(&str) -> Option<String>) -> String {
        let get = |key: &str, var: &str| {
            self.pairs
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .or_else(|| env(var).filter(|v| !v.is_empty()))
        };
        let mut parts = Vec::new();
        if let Some(service) = get("service", "PGSERVICE") {
            parts.push(format!("service `{service}`"));
        }
        let host = get("host", "PGHOST").or_else(|| get("hostaddr", "PGHOSTADDR"));
        parts.push(format!(
            "host `{}`",
            host.unwrap_or_else(|| "local socket".into())
        ));
        parts.push(format!(
            "port {}",
            get("port", "PGPORT").unwrap_or_else(|| "5432".into())
        ));
        let user = get("user", "PGUSER");
        parts.push(format!(
            "database `{}`",
            get("dbname", "PGDATABASE")
                .or_else(|| user.clone())
                .unwrap_or_else(|| "(the user's name)".into())
        ));
        parts.push(format!(
            "user `{}`",
            user.unwrap_or_else(|| "(the login name)".into())
        ));
        parts.join(", ")
    }
}

/// What follows `postgresql://` or `postgres://` at the start of `s`.
fn uri_body(s: &str) -> Option<&str> {
    s.strip_prefix("postgresql://")
        .or_else(|| s.strip_prefix("postgres://"))
}

/// Whether a URI body has a password: `user:secret@` before the first `/`
/// (libpq's rule), or a `password=` parameter.
fn uri_has_secret(after: &str) -> bool {
    let auth = after.split('/').next().unwrap_or("");
    auth.rfind('@').is_some_and(|at| auth[..at].contains(':'))
        || after.to_ascii_lowercase().contains("password=")
}

fn check_schema(s: &str) -> Result<(), PgError> {
    let mut chars = s.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let reserved = s.starts_with("pg_") || s == "information_schema";
    if first_ok && rest_ok && s.len() <= SCHEMA_MAX && !reserved {
        Ok(())
    } else {
        Err(PgError::Schema(s.to_string()))
    }
}

/// Splits a libpq keyword/value connection string (`key = value`, values
/// bare or single-quoted, `\` escaping the next character).
fn conninfo_pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut it = s.chars().peekable();
    loop {
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        if it.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = it.next_if(|c| c.is_ascii_alphanumeric() || *c == '_') {
            key.push(c);
        }
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        if key.is_empty() || it.next() != Some('=') {
            return Err(format!("expected keyword=value after {} pairs", out.len()));
        }
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if it.next_if_eq(&'\'').is_some() {
            loop {
                match it.next() {
                    None => return Err(format!("the value of `{key}` has no closing quote")),
                    Some('\'') => break,
                    Some('\\') => value.extend(it.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = it.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(it.next());
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key.to_ascii_lowercase(), value));
    }
}

/// `msg` with every `password=...` value, every `scheme://user:secret@`
/// secret and every string of `secrets` (such as PGPASSWORD's value) replaced
/// by `***`: GDAL and libpq may echo a connection string in their errors. A
/// secret shorter than [`SHORT_SECRET`] bytes is replaced only where it
/// stands alone (no letter or digit on either side): blanking every `a` of
/// a message would garble it and point at the password.
pub(crate) fn redact(msg: &str, secrets: &[&str]) -> String {
    let mut out = redact_password_pairs(msg);
    out = redact_uri_secrets(&out);
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = if s.len() < SHORT_SECRET {
            replace_standalone(&out, s)
        } else {
            out.replace(s, "***")
        };
    }
    out
}

/// Below this length (bytes) a secret is redacted only where it stands alone.
const SHORT_SECRET: usize = 8;

/// `msg` with each occurrence of `secret` that has no letter or digit
/// directly before or after it replaced by `***`.
fn replace_standalone(msg: &str, secret: &str) -> String {
    let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let mut out = String::with_capacity(msg.len());
    let mut done = 0;
    for (at, _) in msg.match_indices(secret) {
        let end = at + secret.len();
        if word(msg[..at].chars().next_back()) || word(msg[end..].chars().next()) {
            continue;
        }
        out.push_str(&msg[done..at]);
        out.push_str("***");
        done = end;
    }
    out.push_str(&msg[done..]);
    out
}

fn redact_password_pairs(msg: &str) -> String {
    let lower = msg.to_ascii_lowercase();
    let mut out = String::with_capacity(msg.len());
    let mut i = 0;
    while let Some(found) = lower[i..].find("password") {
        let key_end = i + found + "password".len();
        out.push_str(&msg[i..key_end]);
        let rest = &msg[key_end..];
        let after_ws = rest.trim_start();
        let Some(value) = after_ws.strip_prefix('=') else {
            i = key_end;
            continue;
        };
        let value = value.trim_start();
        let consumed = rest.len() - value.len();
        let len = value_len(value);
        out.push_str("=***");
        i = key_end + consumed + len;
    }
    out.push_str(&msg[i..]);
    out
}

/// Bytes of a conninfo value at the start of `v`: quoted or up to whitespace.
fn value_len(v: &str) -> usize {
    let mut chars = v.char_indices();
    if v.starts_with('\'') {
        chars.next();
        let mut escaped = false;
        for (i, c) in chars {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => return i + 1,
                _ => {}
            }
        }
        return v.len();
    }
    let mut escaped = false;
    for (i, c) in chars {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if c.is_whitespace() || c == '"' => return i,
            _ => {}
        }
    }
    v.len()
}

fn redact_uri_secrets(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(p) = rest.find("://") {
        let (head, tail) = rest.split_at(p + 3);
        out.push_str(head);
        // libpq ends the user info at the last `@` before the first `/`.
        let auth_end = tail
            .find(|c: char| c == '/' || c.is_whitespace())
            .unwrap_or(tail.len());
        let auth = &tail[..auth_end];
        match (auth.rfind('@'), auth.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&auth[..colon]);
                out.push_str(":***");
                out.push_str(&auth[at..]);
            }
            _ => out.push_str(auth),
        }
        rest = &tail[auth_end..];
    }
    out.push_str(rest);
    out
}
