//! The only owner of the terminal: progress bars on a TTY, plain periodic
//! lines otherwise, nothing but errors with `--quiet`; the final summary on
//! stdout as `key: value` lines; error chains printed once with hints.
//! Makes no domain decisions. Every line printed passes through
//! [`sanitize`]: text from the API or from files (error messages, names,
//! paths) never reaches the terminal as control or escape sequences, and never
//! starts a line of its own: warnings and status lines are one line each,
//! and an error's continuation lines are indented.
#![allow(clippy::print_stderr, clippy::print_stdout)]

use std::borrow::Cow;

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::fetch::{FetchReport, Progress};

/// `text` made safe for a terminal: ESC sequences (CSI, OSC, DCS and the
/// like, with their parameters and payload), other C0 and C1 control
/// characters, DEL and Unicode bidirectional overrides are removed; a tab
/// becomes a space; a line break is kept only when `keep_newlines`.
pub(crate) fn sanitize(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let clean = |c: char| {
        (!c.is_control() || c == '\t' || (c == '\n' && keep_newlines)) && !is_bidi_control(c)
    };
    if text.chars().all(clean) && !text.contains('\t') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => skip_escape(&mut chars),
            '\t' => out.push(' '),
            c if clean(c) => out.push(c),
            _ => {}
        }
    }
    Cow::Owned(out)
}

/// `text` with every line after the first indented (the messages' own
/// continuation lines already are), so a line break in a quoted path or
/// value can never start a line that looks like one of ours.
fn indented(text: &str) -> Cow<'_, str> {
    if !text.contains('\n') {
        return Cow::Borrowed(text);
    }
    let lines: Vec<String> = (text.split('\n').enumerate())
        .map(|(i, l)| match i {
            0 => l.to_string(),
            _ if l.starts_with(' ') => l.to_string(),
            _ => format!("  {l}"),
        })
        .collect();
    Cow::Owned(lines.join("\n"))
}

/// A warning's line: untrusted parts (names, paths, API text) cannot break
/// it, since a warning is one line.
fn warning_line(line: &str) -> String {
    format!("warning: {}", sanitize(line, false))
}

/// Unicode characters that reorder the text around them on display.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
}

/// Consumes the rest of an escape sequence whose ESC was just read.
fn skip_escape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    match chars.next() {
        // CSI: parameter and intermediate bytes, then one final byte.
        Some('[') => {
            for c in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    break;
                }
            }
        }
        // OSC, DCS, SOS, PM, APC: a string ended by BEL or ST (ESC \\).
        Some(']' | 'P' | 'X' | '^' | '_') => {
            while let Some(c) = chars.next() {
                if c == '\u{7}' || c == '\u{9c}' {
                    break;
                }
                if c == '\u{1b}' {
                    if chars.peek() == Some(&'\\') {
                        chars.next();
                    }
                    break;
                }
            }
        }
        // Any other escape: ESC and one more character.
        _ => {}
    }
}

/// Prints an error chain once: `error: …` then indented `caused by: …` lines.
pub(crate) fn print_error(err: &anyhow::Error) {
    eprintln!("error: {}", indented(&sanitize(&err.to_string(), true)));
    let mut shown = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        // thiserror messages often quote their source already: print it once.
        if !shown.contains(&text) {
            eprintln!("  caused by: {}", indented(&sanitize(&text, true)));
        }
        shown = text;
    }
    if shown.contains("could not connect") || shown.contains("timed out") {
        eprintln!(
            "  hint: check --api-url / MLYEXPORT_API_URL and the network; re-running resumes"
        );
    }
}

/// Where a command's human output goes.
#[derive(Debug, Clone)]
pub(crate) struct Reporter {
    quiet: bool,
    tty: bool,
}

/// A running progress display; `finish` stops it.
pub(crate) struct ProgressDisplay {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ProgressDisplay {
    pub(crate) fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Reporter {
    pub(crate) fn new(quiet: bool) -> Self {
        Self {
            quiet,
            tty: std::io::stderr().is_terminal(),
        }
    }
    pub(crate) fn is_tty(&self) -> bool {
        self.tty && !self.quiet
    }
    /// A progress or status line on stderr, one line (suppressed by `--quiet`).
    pub(crate) fn info(&self, line: &str) {
        if !self.quiet {
            eprintln!("{}", sanitize(line, false));
        }
    }
    /// A warning on stderr, one line (suppressed by `--quiet`).
    pub(crate) fn warn(&self, line: &str) {
        if !self.quiet {
            eprintln!("{}", warning_line(line));
        }
    }
    /// A JSON document on stdout, as it is (`status --json`; suppressed by
    /// `--quiet`). Its strings are JSON-escaped, so no control character
    /// reaches the terminal.
    pub(crate) fn json(&self, text: &str) {
        if !self.quiet {
            println!("{text}");
        }
    }

    /// The final summary on stdout, `key: value` lines (suppressed by `--quiet`).
    pub(crate) fn summary(&self, lines: &[(String, String)]) {
        if self.quiet {
            return;
        }
        for (k, v) in lines {
            println!("{}: {}", sanitize(k, false), sanitize(v, false));
        }
    }

    /// Shows fetch progress until `finish`: bars on a TTY (grids listed,
    /// images, bytes, rate, ETA), a plain line every 10 s otherwise.
    pub(crate) fn fetch_progress(&self, p: Arc<Progress>) -> ProgressDisplay {
        let stop = Arc::new(AtomicBool::new(false));
        if self.quiet {
            return ProgressDisplay { stop, thread: None };
        }
        let tty = self.tty;
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            if tty {
                bars(&p, &stop2);
            } else {
                plain(&p, &stop2);
            }
        });
        ProgressDisplay {
            stop,
            thread: Some(thread),
        }
    }

    /// The summary of a fetch.
    pub(crate) fn fetch_summary(&self, r: &FetchReport, out: &Path) {
        let c = &r.counts;
        let mut lines = vec![
            ("listed".to_string(), c.listed.to_string()),
            ("thinned (--min-spacing)".to_string(), c.thinned.to_string()),
        ];
        if r.dry_run {
            lines.push(("estimated bytes".into(), r.estimated_bytes.to_string()));
            lines.push(("estimated size".into(), human_bytes(r.estimated_bytes)));
        } else {
            lines.push(("downloaded".into(), c.downloaded.to_string()));
            lines.push(("skipped (already there)".into(), c.skipped.to_string()));
            if r.grids.len() > 1 {
                let per: Vec<String> = per_grid(&r.new_per_grid)
                    .iter()
                    .map(|(g, n)| format!("{g}: {n}"))
                    .collect();
                lines.push(("downloaded per grid".into(), per.join(", ")));
            }
            if c.moved > 0 {
                lines.push((
                    "kept in their first grid (moved)".into(),
                    c.moved.to_string(),
                ));
            }
            let reasons: Vec<String> = c
                .failed_by_reason
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let failed = if reasons.is_empty() {
                c.failed.to_string()
            } else {
                format!("{} ({})", c.failed, reasons.join(", "))
            };
            lines.push(("failed".into(), failed));
            lines.push(("bytes".into(), c.bytes.to_string()));
        }
        lines.push(("without position".into(), c.without_position.to_string()));
        lines.push(("grids".into(), r.grids.len().to_string()));
        let truncated: Vec<&str> = r
            .grids
            .iter()
            .filter(|g| g.listing == crate::runrecord::Completeness::Truncated)
            .map(|g| g.grid.as_str())
            .collect();
        lines.push(("truncated grids".into(), list_or_zero(&truncated)));
        let failed: Vec<&str> = r
            .grids
            .iter()
            .filter(|g| g.listing == crate::runrecord::Completeness::Failed)
            .map(|g| g.grid.as_str())
            .collect();
        lines.push(("failed grids".into(), list_or_zero(&failed)));
        lines.push(("listing".into(), listing_line(r)));
        if c.verified_grids > 0 {
            lines.push((
                "looked up by id (tiles only)".into(),
                c.reconciled.to_string(),
            ));
            lines.push(("only in searches".into(), c.only_in_search.to_string()));
        }
        lines.push(("search calls".into(), c.search_calls.to_string()));
        lines.extend(tile_lines(r));
        lines.push(("output".into(), out.display().to_string()));
        if let Some(shard) = &r.shard {
            lines.push(("shard".into(), shard.clone()));
        }
        for w in &r.warnings {
            self.warn(w);
        }
        self.summary(&lines);
        if r.status == crate::ExitStatus::Interrupted {
            self.info("interrupted: state saved; run the same command again to resume");
        }
    }
}

/// Counts per grid id, the parts of one cell (a shard's) added up, in order.
fn per_grid(counts: &[(String, u64)]) -> Vec<(&str, u64)> {
    let mut out: Vec<(&str, u64)> = Vec::new();
    for (g, n) in counts {
        match out.last_mut() {
            Some((last, m)) if *last == g.as_str() => *m += n,
            _ => out.push((g.as_str(), *n)),
        }
    }
    out
}

/// `verified N of M grids`, or how many are only assumed complete.
fn listing_line(r: &FetchReport) -> String {
    let c = &r.counts;
    let n = r.grids.len();
    if c.verified_grids as usize == n {
        format!("verified ({n} of {n} grids)")
    } else {
        let assumed = r
            .grids
            .iter()
            .filter(|g| g.listing.label().starts_with("assumed"))
            .count();
        format!(
            "NOT VERIFIED: {} of {n} grids verified, {assumed} assumed complete (not verified)",
            c.verified_grids
        )
    }
}

/// Summary lines of tile enumeration, of the estimate for it, and of `--audit`.
fn tile_lines(r: &FetchReport) -> Vec<(String, String)> {
    let c = &r.counts;
    let mut lines = Vec::new();
    if c.tiles > 0 || c.tile_calls > 0 {
        lines.push(("tiles (z14)".into(), c.tiles.to_string()));
        lines.push(("tile calls".into(), c.tile_calls.to_string()));
        lines.push(("batch calls".into(), c.batch_calls.to_string()));
    } else if let (true, Some(est)) = (r.dry_run, r.tile_needs.if_tiles) {
        let v = match est {
            Ok(n) => format!(
                "{n} tiles and about {} image_ids batch calls",
                c.listed.div_ceil(crate::api::tiles::MAX_BATCH as u64)
            ),
            Err(upper) => format!("up to {upper} tiles, more than --tile-budget"),
        };
        lines.push(("with --enumerate tiles".into(), v));
    }
    if let Some(a) = &r.audit {
        let t = &a.totals;
        lines.push((
            "audit".into(),
            format!(
                "{} boxes, {} with differences: {} images only by search, {} only by tiles ({})",
                t.boxes,
                t.boxes_with_differences,
                t.only_search,
                t.only_tiles,
                crate::store::AUDIT_FILE
            ),
        ));
    }
    lines
}

fn list_or_zero(v: &[&str]) -> String {
    if v.is_empty() {
        "0".into()
    } else {
        format!("{} ({})", v.len(), v.join(", "))
    }
}

/// Bytes in binary units, e.g. `12.3 MiB`.
pub(crate) fn human_bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

fn load(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// The terminal's width in columns (80 when stderr is not a terminal).
fn term_width() -> usize {
    terminal_size::terminal_size_of(std::io::stderr()).map_or(80, |(w, _)| usize::from(w.0))
}

/// Draws the listing and download lines, each fitted to the terminal's
/// current width (see [`fit_line`]), until `stop`.
fn bars(p: &Progress, stop: &AtomicBool) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
    let line = || {
        let bar = ProgressBar::new(0);
        bar.set_style(ProgressStyle::with_template("{msg}").expect("valid template"));
        bar
    };
    let grids = multi.add(line());
    let mut images: Option<(ProgressBar, Instant)> = None;
    while !stop.load(Ordering::Relaxed) {
        let width = term_width();
        grids.set_message(listing_status_line(
            load(&p.grids_listed),
            load(&p.grids_total),
            load(&p.listed),
            width,
        ));
        if load(&p.phase) >= 1 {
            let (bar, started) = images.get_or_insert_with(|| (multi.add(line()), Instant::now()));
            bar.set_message(download_status_line(&download_status(p, *started), width));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    grids.finish_and_clear();
    if let Some((bar, _)) = images {
        bar.finish_and_clear();
    }
}

/// The download counters now, `started` being when the downloads began.
fn download_status(p: &Progress, started: Instant) -> DownloadStatus {
    DownloadStatus {
        done: load(&p.downloaded) + load(&p.skipped) + load(&p.failed),
        total: load(&p.to_download),
        new: load(&p.downloaded),
        skipped: load(&p.skipped),
        failed: load(&p.failed),
        bytes: load(&p.bytes),
        elapsed: started.elapsed(),
    }
}
/// Narrowest and widest progress bar drawn in a status line, in columns.
const BAR_MIN: usize = 10;
const BAR_MAX: usize = 30;

/// The download counters at one moment, as the status line shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct DownloadStatus {
    /// Images handled (downloaded, skipped or failed) and to handle.
    pub(crate) done: u64,
    pub(crate) total: u64,
    pub(crate) new: u64,
    pub(crate) skipped: u64,
    pub(crate) failed: u64,
    pub(crate) bytes: u64,
    /// Time since the downloads started.
    pub(crate) elapsed: Duration,
}

/// The listing status line: `listing [bar] 3/12 grids  2600 images listed`,
/// shortened to fit `width` columns (see [`fit_line`]).
pub(crate) fn listing_status_line(
    grids_done: u64,
    grids: u64,
    images: u64,
    width: usize,
) -> String {
    let parts = vec![
        (0, format!("{grids_done}/{grids} grids")),
        (1, format!("{images} images listed")),
    ];
    fit_line(" listing", fraction(grids_done, grids), parts, width)
}

/// The download status line, shortened to fit `width` columns (see
/// [`fit_line`]): the count first, then failures, the time left, the rate,
/// the new and skipped counts and the bytes, dropped in the reverse order.
pub(crate) fn download_status_line(s: &DownloadStatus, width: usize) -> String {
    let secs = s.elapsed.as_secs_f64().max(0.1);
    let mut parts = vec![(0, format!("{}/{} images", s.done, s.total))];
    if let Some(eta) = eta(s.done, s.total, secs) {
        parts.push((2, format!("ETA {eta}")));
    }
    parts.push((3, format!("{:.1} img/s", s.new as f64 / secs)));
    parts.push((4, format!("{} new", s.new)));
    parts.push((4, format!("{} skipped", s.skipped)));
    if s.failed > 0 {
        parts.push((1, format!("{} failed", s.failed)));
    }
    let rate = human_bytes((s.bytes as f64 / secs) as u64);
    parts.push((5, format!("{} ({rate}/s)", human_bytes(s.bytes))));
    fit_line("download", fraction(s.done, s.total), parts, width)
}

/// `head [bar] part  part  ...` in at most `width - 1` columns (the last
/// column stays free so the terminal never wraps the line). Parts are
/// `(rank, text)` in display order; while the line is too long the part
/// with the highest rank goes first (the last of equal ranks), then the
/// bar; the bar takes the room left, from [`BAR_MIN`] to [`BAR_MAX`]
/// columns. A line that still does not fit is cut.
pub(crate) fn fit_line(
    head: &str,
    done: f64,
    mut parts: Vec<(u8, String)>,
    width: usize,
) -> String {
    let room = width.saturating_sub(1);
    let text_len = |parts: &[(u8, String)]| -> usize {
        head.chars().count()
            + parts
                .iter()
                .map(|(_, t)| t.chars().count() + 2)
                .sum::<usize>()
    };
    loop {
        // The line's length is `used` plus the bar (with its brackets).
        let used = text_len(&parts);
        if used + BAR_MIN <= room {
            let bar = (room - used).min(BAR_MAX);
            return join(head, Some(draw_bar(done, bar)), &parts);
        }
        let Some(drop) = droppable(&parts) else { break };
        parts.remove(drop);
    }
    let line = join(head, None, &parts);
    line.chars().take(room).collect()
}

/// The index of the part to drop next: the highest rank above 0, the last
/// of equal ranks.
fn droppable(parts: &[(u8, String)]) -> Option<usize> {
    let (i, (rank, _)) = parts
        .iter()
        .enumerate()
        .max_by_key(|(i, (rank, _))| (*rank, *i))?;
    (*rank > 0).then_some(i)
}

fn join(head: &str, bar: Option<String>, parts: &[(u8, String)]) -> String {
    let mut line = head.to_string();
    if let Some(bar) = bar {
        line.push(' ');
        line.push_str(&bar);
    }
    for (i, (_, text)) in parts.iter().enumerate() {
        line.push_str(if i == 0 { " " } else { "  " });
        line.push_str(text);
    }
    line
}

/// `[=====>    ]`, `width` columns in all.
fn draw_bar(done: f64, width: usize) -> String {
    let inner = width.saturating_sub(2);
    let filled = ((done.clamp(0.0, 1.0) * inner as f64) as usize).min(inner);
    let mut bar = String::with_capacity(width);
    bar.push('[');
    bar.extend(std::iter::repeat_n('=', filled));
    if filled < inner {
        bar.push('>');
        bar.extend(std::iter::repeat_n(' ', inner - filled - 1));
    }
    bar.push(']');
    bar
}

fn fraction(done: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        done as f64 / total as f64
    }
}

/// Time left at the average rate so far, e.g. `1h02m`, `3m12s`, `45s`.
fn eta(done: u64, total: u64, secs: f64) -> Option<String> {
    if done == 0 || done >= total {
        return None;
    }
    let left = ((total - done) as f64 * secs / done as f64).round() as u64;
    Some(match left {
        0..60 => format!("{left}s"),
        60..3600 => format!("{}m{:02}s", left / 60, left % 60),
        _ => format!("{}h{:02}m", left / 3600, left % 3600 / 60),
    })
}

fn plain(p: &Progress, stop: &AtomicBool) {
    let start = Instant::now();
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if last.elapsed() < Duration::from_secs(10) {
            continue;
        }
        last = Instant::now();
        let secs = start.elapsed().as_secs().max(1);
        if load(&p.phase) == 0 {
            eprintln!(
                "progress: listing grids {}/{} images_listed={} elapsed={secs}s",
                load(&p.grids_listed),
                load(&p.grids_total),
                load(&p.listed)
            );
        } else {
            let done = load(&p.downloaded) + load(&p.skipped) + load(&p.failed);
            eprintln!(
                "progress: images {done}/{} downloaded={} skipped={} failed={} bytes={} rate={}/s elapsed={secs}s",
                load(&p.to_download),
                load(&p.downloaded),
                load(&p.skipped),
                load(&p.failed),
                load(&p.bytes),
                load(&p.downloaded) / secs
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_controls_never_reach_the_terminal() {
        let hostile = "bad\u{1b}]0;owned\u{7}\u{1b}[2Jthing\u{1b}[31mred\u{1b}P1$q\u{1b}\\!\r\u{8}\u{9b}2J\u{202e}x\u{0}\u{7f}";
        assert_eq!(sanitize(hostile, false), "badthingred!2Jx");
        assert_eq!(sanitize("a\nb\tc", true), "a\nb c");
        assert_eq!(sanitize("a\nb", false), "ab");
        assert!(matches!(sanitize("plain café", false), Cow::Borrowed(_)));
        assert_eq!(sanitize("cut \u{1b}[", false), "cut ");
        assert_eq!(sanitize("cut \u{1b}]0;title", false), "cut ");
    }

    #[test]
    fn untrusted_line_breaks_start_no_line_of_ours() {
        let name = "5\nwarning: all good\r\nerror: x";
        let w = warning_line(&format!("left in place: {name}: not understood"));
        assert_eq!(
            w,
            "warning: left in place: 5warning: all gooderror: x: not understood"
        );
        let e = indented("cannot read `a\nwarning: ok`:\n  fix: this");
        assert_eq!(e, "cannot read `a\n  warning: ok`:\n  fix: this");
        assert!(matches!(indented("one line"), Cow::Borrowed(_)));
    }

    /// A download under way: 1,234 of 5,678 images after 100 s.
    fn under_way() -> DownloadStatus {
        DownloadStatus {
            done: 1_234,
            total: 5_678,
            new: 1_230,
            skipped: 4,
            failed: 0,
            bytes: 129_394_278,
            elapsed: Duration::from_secs(100),
        }
    }

    #[test]
    fn the_download_line_fits_120_columns_with_every_field() {
        let line = download_status_line(&under_way(), 120);
        assert_eq!(
            line,
            "download [=====>                  ] 1234/5678 images  ETA 6m00s  12.3 img/s  \
             1230 new  4 skipped  123.4 MiB (1.2 MiB/s)"
        );
        assert!(line.chars().count() < 120);
    }

    #[test]
    fn the_download_line_drops_the_least_useful_fields_at_80_columns() {
        let line = download_status_line(&under_way(), 80);
        assert_eq!(
            line,
            "download [===>              ] 1234/5678 images  ETA 6m00s  12.3 img/s  1230 new"
        );
        assert!(line.chars().count() < 80);
        // Failures are kept before the time left, the rate and the counts.
        let failing = DownloadStatus {
            failed: 56_789,
            ..under_way()
        };
        let line = download_status_line(&failing, 80);
        assert!(
            line.contains("56789 failed") && line.chars().count() < 80,
            "{line}"
        );
    }

    #[test]
    fn status_lines_never_exceed_the_width() {
        let huge = DownloadStatus {
            done: u64::MAX / 2,
            total: u64::MAX,
            new: u64::MAX / 4,
            skipped: u64::MAX / 4,
            failed: u64::MAX / 4,
            bytes: u64::MAX,
            elapsed: Duration::from_secs(1),
        };
        for width in [0, 1, 20, 40, 80, 120, 300] {
            for line in [
                download_status_line(&huge, width),
                download_status_line(&under_way(), width),
                download_status_line(&DownloadStatus::default(), width),
                listing_status_line(3, 12, 2_600, width),
                listing_status_line(u64::MAX, u64::MAX, u64::MAX, width),
            ] {
                assert!(line.chars().count() < width.max(1), "{width}: {line:?}");
            }
        }
        assert_eq!(
            listing_status_line(3, 12, 2_600, 80),
            " listing [=======>                    ] 3/12 grids  2600 images listed"
        );
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn sanitized_text_has_no_controls(s in "(\\PC|[\\x00-\\x1f\\x7f-\\x9f\\u{202e}])*", nl in any::<bool>()) {
                let out = sanitize(&s, nl);
                prop_assert!(out.chars().all(|c| (!c.is_control() || (nl && c == '\n')) && !is_bidi_control(c)), "{out:?}");
            }
        }
    }
}
