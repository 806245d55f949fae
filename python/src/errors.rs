//! Rust errors to the Python exceptions of `mlyexport._errors`
//! (`Error`, `TokenError`, `ApiError`, `ListingError`, `ConfigError`).

use mlyexport::api::ApiError;
use mlyexport::config::ConfigError;
use mlyexport::fetch::FetchError;
use pyo3::prelude::*;

/// The Python exception classes, by name.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Error,
    Token,
    Api,
    Listing,
    Config,
}

impl Kind {
    fn class_name(self) -> &'static str {
        match self {
            Kind::Error => "Error",
            Kind::Token => "TokenError",
            Kind::Api => "ApiError",
            Kind::Listing => "ListingError",
            Kind::Config => "ConfigError",
        }
    }
}

/// A Python exception of `kind` with `message`.
pub fn raise(kind: Kind, message: impl Into<String>) -> PyErr {
    let message = message.into();
    Python::attach(|py| {
        match py
            .import("mlyexport._errors")
            .and_then(|m| m.getattr(kind.class_name()))
        {
            Ok(class) => match class.call1((message.clone(),)) {
                Ok(exc) => PyErr::from_value(exc),
                Err(e) => e,
            },
            Err(e) => e,
        }
    })
}

pub fn api(e: &ApiError) -> PyErr {
    match e {
        ApiError::Auth { .. } => raise(Kind::Token, e.to_string()),
        _ => raise(Kind::Api, e.to_string()),
    }
}

pub fn config(e: &ConfigError) -> PyErr {
    match e {
        ConfigError::NoToken
        | ConfigError::BadToken(_)
        | ConfigError::TokenFile { .. }
        | ConfigError::DotEnv { .. } => raise(Kind::Token, e.to_string()),
        _ => raise(Kind::Config, e.to_string()),
    }
}

pub fn fetch(e: &FetchError) -> PyErr {
    match e {
        FetchError::Api(a) => api(a),
        FetchError::Preflight(a) => match a {
            ApiError::Auth { .. } => raise(Kind::Token, a.to_string()),
            _ => raise(Kind::Api, format!("{e}: {a}")),
        },
        FetchError::Listing(_) => raise(Kind::Listing, full(e)),
        _ => raise(Kind::Error, full(e)),
    }
}

/// An error with its chain of causes, `: `-separated.
pub fn full(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// A clap error without its usage lines (the Python names differ).
pub fn clap(e: &clap::Error) -> PyErr {
    let text = e.to_string();
    let first = text
        .split("\n\n")
        .next()
        .unwrap_or(&text)
        .trim()
        .trim_start_matches("error: ")
        .to_string();
    raise(Kind::Config, first)
}
