//! A worker's stderr, relayed into the supervisor's log.
//!
//! Each worker (with its reaper, and the sandbox steps before its exec)
//! writes to a pipe of its own, never to the supervisor's stderr. A
//! compromised worker holding the supervisor's stderr could write lines
//! that read as the supervisor's or another tenant's, send escape
//! sequences to the admin's terminal, or fill the log's disk, which every
//! tenant's store shares. The supervisor reads the pipe and logs each line
//! under a `worker{tenant=…}` span it sets itself, with control characters
//! escaped, lines cut at [`MAX_LINE`] bytes and at most [`RATE`] lines a
//! second ([`BURST`] at once) per worker. What is dropped is counted and
//! said at most once a second.

use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use bulkhead_shared::rate::TokenBucket;
use tracing::{Instrument, Level};

/// Longest line kept, in bytes; the rest of a longer one is cut.
pub const MAX_LINE: usize = 4096;
/// Lines a second a worker may log, after a burst of [`BURST`]. A worker
/// logs a few lines per start and per unusual call, so only a flood (or a
/// worker that is no longer ours) reaches this.
pub const RATE: f64 = 100.0;
pub const BURST: f64 = 1000.0;
/// How often a running count of dropped lines is logged.
const DROPPED_EVERY: Duration = Duration::from_secs(1);

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)
}

/// What to log for the bytes a worker wrote.
#[derive(Debug, PartialEq, Eq)]
pub enum Relayed {
    /// One line, at the level the worker's logger gave it (a line without
    /// one, such as a panic message or a sandbox step's failure: `WARN`).
    Line { level: Level, text: String },
    /// Lines dropped over the rate since the last count.
    Dropped(u64),
}

/// Splits a worker's output into bounded, escaped, rate-limited lines.
#[derive(Debug)]
pub struct Lines {
    partial: Vec<u8>,
    /// The line being read passed [`MAX_LINE`]; its rest is skipped.
    cut: bool,
    bucket: TokenBucket,
    dropped: u64,
    counted: Instant,
}

impl Lines {
    pub fn new(now: Instant) -> Self {
        Self {
            partial: Vec::new(),
            cut: false,
            bucket: TokenBucket::new(RATE, BURST, now),
            dropped: 0,
            counted: now,
        }
    }

    /// Bytes read from the pipe; what to log is appended to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], now: Instant, out: &mut Vec<Relayed>) {
        while let Some(end) = bytes.iter().position(|b| *b == b'\n') {
            self.keep(&bytes[..end]);
            self.end_line(now, out);
            bytes = &bytes[end + 1..];
        }
        self.keep(bytes);
    }

    /// End of file: the last line if it had no newline, and the count of
    /// lines dropped since the last one was said.
    pub fn finish(&mut self, now: Instant, out: &mut Vec<Relayed>) {
        if !self.partial.is_empty() || self.cut {
            self.end_line(now, out);
        }
        if self.dropped > 0 {
            out.push(Relayed::Dropped(std::mem::take(&mut self.dropped)));
        }
    }

    /// Says how many lines were dropped, if any were and the last count
    /// is at least [`DROPPED_EVERY`] old.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Relayed>) {
        if self.dropped > 0 && now.saturating_duration_since(self.counted) >= DROPPED_EVERY {
            out.push(Relayed::Dropped(std::mem::take(&mut self.dropped)));
            self.counted = now;
        }
    }

    /// Lines were dropped and not yet counted.
    pub fn dropping(&self) -> bool {
        self.dropped > 0
    }

    fn keep(&mut self, part: &[u8]) {
        let room = MAX_LINE - self.partial.len();
        if part.len() > room {
            self.cut = true;
        }
        self.partial
            .extend_from_slice(&part[..part.len().min(room)]);
    }

    fn end_line(&mut self, now: Instant, out: &mut Vec<Relayed>) {
        let raw = std::mem::take(&mut self.partial);
        let cut = std::mem::take(&mut self.cut);
        if raw.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let passes = self.bucket.take(now);
        if !passes {
            self.dropped += 1;
        }
        self.tick(now, out);
        if !passes {
            return;
        }
        let text = String::from_utf8_lossy(&raw);
        let (level, text) = level_of(&text);
        let mut text = escaped(text);
        if cut {
            text.push_str(&format!(" [cut at {MAX_LINE} bytes]"));
        }
        out.push(Relayed::Line { level, text });
    }
}

/// The level a worker's logger wrote at the start of `line`, and the rest.
fn level_of(line: &str) -> (Level, &str) {
    let trimmed = line.trim_start();
    for (word, level) in [
        ("ERROR ", Level::ERROR),
        ("WARN ", Level::WARN),
        ("INFO ", Level::INFO),
        ("DEBUG ", Level::DEBUG),
        ("TRACE ", Level::TRACE),
    ] {
        if let Some(rest) = trimmed.strip_prefix(word) {
            return (level, rest.trim());
        }
    }
    (Level::WARN, line.trim_end())
}

/// `line` with every control character (ESC, CR, C1 controls...) and
/// every bidirectional override written as a `\u{…}` escape: nothing a
/// worker writes moves the cursor, colours the terminal or reorders text.
fn escaped(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if (c.is_control() && c != '\t') || bidi {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads `pipe` (a worker's stderr) to its end, logging what it carries
/// under `worker{tenant=…}`. Ends when every write end is closed: the
/// worker has exited, and anything it started that kept its stderr (the
/// reaper closes its copy at once).
pub async fn relay(pipe: OwnedFd, tenant: String) {
    // An error span: enabled under every filter that logs anything, so no
    // relayed line appears without the tenant it came from.
    let span = tracing::error_span!("worker", %tenant);
    async move {
        let pipe = match tokio::net::unix::pipe::Receiver::from_owned_fd(pipe) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the worker's stderr; its output is lost");
                return;
            }
        };
        // What a relay keeps between reads is `lines` (and its partial
        // line): the read buffer and the lines to log live only while a
        // read is handled, so a thousand quiet workers cost little.
        let mut lines = Lines::new(Instant::now());
        loop {
            // While lines are being dropped, wake once a second to count
            // them even if the worker has gone quiet.
            let ready = if lines.dropping() {
                match tokio::time::timeout(DROPPED_EVERY, pipe.readable()).await {
                    Ok(ready) => ready,
                    Err(_) => {
                        let mut out = Vec::new();
                        lines.tick(Instant::now(), &mut out);
                        out.into_iter().for_each(log);
                        continue;
                    }
                }
            } else {
                pipe.readable().await
            };
            if let Err(e) = ready {
                tracing::error!(error = %e, "waiting for the worker's stderr failed");
                break;
            }
            let mut buf = [0u8; 8192];
            let mut out = Vec::new();
            match pipe.try_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => lines.feed(&buf[..n], Instant::now(), &mut out),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    tracing::error!(error = %e, "reading the worker's stderr failed");
                    break;
                }
            }
            out.into_iter().for_each(log);
        }
        let mut out = Vec::new();
        lines.finish(Instant::now(), &mut out);
        out.into_iter().for_each(log);
    }
    .instrument(span)
    .await
}

fn log(relayed: Relayed) {
    match relayed {
        Relayed::Line { level, text } => match level {
            Level::ERROR => tracing::error!("{text}"),
            Level::WARN => tracing::warn!("{text}"),
            Level::INFO => tracing::info!("{text}"),
            Level::DEBUG => tracing::debug!("{text}"),
            _ => tracing::trace!("{text}"),
        },
        Relayed::Dropped(n) => {
            tracing::warn!(dropped = n, "log lines dropped: more than {RATE} a second")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed(chunks: &[&[u8]]) -> Vec<Relayed> {
        let now = Instant::now();
        let mut lines = Lines::new(now);
        let mut out = Vec::new();
        for c in chunks {
            lines.feed(c, now, &mut out);
        }
        lines.finish(now, &mut out);
        out
    }

    fn line(level: Level, text: &str) -> Relayed {
        Relayed::Line {
            level,
            text: text.into(),
        }
    }

    #[test]
    fn lines_keep_the_workers_level_across_reads() {
        let out = fed(&[
            b" INFO worker serving tenant=a ready_ms=1.2\n WA",
            b"RN table full\nthread 'main' panicked at x.rs\n",
            b"ERROR no newline at the end",
        ]);
        assert_eq!(
            out,
            [
                line(Level::INFO, "worker serving tenant=a ready_ms=1.2"),
                line(Level::WARN, "table full"),
                line(Level::WARN, "thread 'main' panicked at x.rs"),
                line(Level::ERROR, "no newline at the end"),
            ]
        );
    }

    #[test]
    fn escapes_and_carriage_returns_are_written_out_not_obeyed() {
        let out = fed(&[b"INFO a\x1b[2Kb\rc\x07 \xe2\x80\xaeevil\x7f\tok\r\n"]);
        assert_eq!(
            out,
            [line(
                Level::INFO,
                "a\\u{1b}[2Kb\\u{d}c\\u{7} \\u{202e}evil\\u{7f}\tok"
            )]
        );
    }

    #[test]
    fn a_long_line_is_cut_and_the_next_one_is_whole() {
        let mut long = vec![b'x'; MAX_LINE * 3];
        long.extend_from_slice(b"\nINFO next\n");
        let out = fed(&[&long[..MAX_LINE / 2], &long[MAX_LINE / 2..]]);
        let want = format!("{} [cut at {MAX_LINE} bytes]", "x".repeat(MAX_LINE));
        assert_eq!(out, [line(Level::WARN, &want), line(Level::INFO, "next")]);
    }

    #[test]
    fn a_flood_is_cut_to_the_burst_then_the_rate_and_counted() {
        let start = Instant::now();
        let mut lines = Lines::new(start);
        let mut out = Vec::new();
        let flood = b"INFO spam\n".repeat(5000);
        lines.feed(&flood, start, &mut out);
        assert_eq!(out.len(), BURST as usize);
        assert!(out.iter().all(|r| matches!(r, Relayed::Line { .. })));
        // Two seconds later: the drops so far are said, then the refill.
        out.clear();
        let later = start + Duration::from_secs(2);
        lines.feed(&flood, later, &mut out);
        assert_eq!(out[0], Relayed::Dropped(4000));
        let passed = out
            .iter()
            .filter(|r| matches!(r, Relayed::Line { .. }))
            .count();
        assert_eq!(passed, (2.0 * RATE) as usize);
        out.clear();
        lines.finish(later, &mut out);
        assert_eq!(out, [Relayed::Dropped(5000 - 2 * RATE as u64)]);
    }

    #[test]
    fn a_worker_that_never_stops_flooding_still_gets_its_drops_counted() {
        let start = Instant::now();
        let mut lines = Lines::new(start);
        let mut out = Vec::new();
        lines.feed(&b"x\n".repeat(BURST as usize), start, &mut out);
        out.clear();
        // Ten more lines every millisecond for 1.5 s: the bucket refills a
        // line every 10 ms, so some pass, and the count is said once (at 1 s).
        for ms in 1..=1500 {
            let now = start + Duration::from_millis(ms);
            lines.feed(&b"x\n".repeat(10), now, &mut out);
        }
        let said: u64 = out
            .iter()
            .map(|r| match r {
                Relayed::Dropped(n) => *n,
                _ => 0,
            })
            .sum();
        let passed = out
            .iter()
            .filter(|r| matches!(r, Relayed::Line { .. }))
            .count() as u64;
        let counts = out
            .iter()
            .filter(|r| matches!(r, Relayed::Dropped(_)))
            .count();
        assert_eq!(counts, 1);
        assert_eq!(said + passed + lines.dropped, 15_000);
        assert!((149..=151).contains(&passed), "{passed}");
    }

    #[test]
    fn a_waiting_relay_holds_no_read_buffer() {
        // One relay per running tenant, waiting almost always. Its future
        // is 504 bytes here; a read buffer kept across the wait (8 KiB)
        // would be in it.
        let (read, _write) = pipe().unwrap();
        let relay = relay(read, "t".into());
        let size = std::mem::size_of_val(&relay);
        assert!(size < 1024, "a waiting relay is {size} bytes");
    }

    #[test]
    fn blank_lines_are_not_logged() {
        assert_eq!(fed(&[b"\n \n\r\n"]), []);
    }
}
