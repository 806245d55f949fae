//! The only owner of the terminal: progress bars on a TTY, plain lines
//! otherwise, nothing but errors with `--quiet`; error chains with hints.
#![allow(clippy::print_stderr, clippy::print_stdout)]

use std::io::IsTerminal;

/// Prints an error chain once: `error: …` then indented `caused by: …` lines.
pub fn print_error(err: &anyhow::Error) {
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}

/// Where a command's human output goes.
#[derive(Debug, Clone)]
pub struct Reporter {
    quiet: bool,
    tty: bool,
}

impl Reporter {
    pub fn new(quiet: bool) -> Self {
        Self {
            quiet,
            tty: std::io::stderr().is_terminal(),
        }
    }
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }
    pub fn is_tty(&self) -> bool {
        self.tty && !self.quiet
    }
    /// A progress or status line on stderr (suppressed by `--quiet`).
    pub fn info(&self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }
    /// A warning on stderr (suppressed by `--quiet`).
    pub fn warn(&self, line: &str) {
        if !self.quiet {
            eprintln!("warning: {line}");
        }
    }
    /// The final summary on stdout, `key: value` lines (suppressed by `--quiet`).
    pub fn summary(&self, lines: &[(String, String)]) {
        if self.quiet {
            return;
        }
        for (k, v) in lines {
            println!("{k}: {v}");
        }
    }
}
