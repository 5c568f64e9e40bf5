//! The report: a table for people (colour on a terminal), JSON and
//! Markdown for pipelines and pull requests.

use std::fmt::Write as _;

use serde::Serialize;

use crate::checks::{Finding, Status};

/// How the report is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table, in colour on a terminal.
    Table,
    /// One JSON document.
    Json,
    /// A Markdown table.
    Markdown,
}

/// How many of each verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Passed.
    pub pass: usize,
    /// Warnings.
    pub warn: usize,
    /// Failures.
    pub fail: usize,
    /// Not observable.
    pub not_observable: usize,
}

impl Counts {
    /// Of `findings`.
    pub fn of(findings: &[Finding]) -> Self {
        let mut c = Self::default();
        for f in findings {
            match f.status {
                Status::Pass => c.pass += 1,
                Status::Warn => c.warn += 1,
                Status::Fail => c.fail += 1,
                Status::NotObservable => c.not_observable += 1,
            }
        }
        c
    }

    /// `3 fail, 5 warn, 12 pass, 8 not-observable`.
    pub fn line(self) -> String {
        format!(
            "{} fail, {} warn, {} pass, {} not-observable",
            self.fail, self.warn, self.pass, self.not_observable
        )
    }
}

#[derive(Serialize)]
struct Document<'a> {
    target: &'a str,
    counts: Counts,
    problems: &'a [String],
    checks: &'a [Finding],
}

/// The report of `findings` about `target`; `problems`: inputs that could
/// not be read.
pub fn render(
    format: Format,
    target: &str,
    findings: &[Finding],
    problems: &[String],
    colour: bool,
) -> String {
    let counts = Counts::of(findings);
    match format {
        Format::Json => serde_json::to_string_pretty(&Document {
            target,
            counts,
            problems,
            checks: findings,
        })
        .unwrap_or_default(),
        Format::Markdown => {
            let mut out = format!(
                "## Can {target} be observed?\n\n{}\n\n| | check | finding | fix |\n|---|---|---|---|\n",
                counts.line()
            );
            for f in findings {
                let evidence = if f.evidence.is_empty() {
                    String::new()
                } else {
                    format!(
                        "<br>{}",
                        f.evidence
                            .iter()
                            .map(|e| format!("`{}`", e.replace('|', "\\|").replace('`', "'")))
                            .collect::<Vec<_>>()
                            .join("<br>")
                    )
                };
                let _ = writeln!(
                    out,
                    "| {} | `{}` | {}{} | {} |",
                    f.status.as_str(),
                    f.id,
                    f.summary.replace('|', "\\|"),
                    evidence,
                    if f.status == Status::Pass || f.status == Status::NotObservable {
                        ""
                    } else {
                        f.fix
                    }
                );
            }
            for p in problems {
                let _ = writeln!(out, "\n**Could not read:** {p}");
            }
            out
        }
        Format::Table => {
            let paint = |s: Status| {
                let word = format!("{:<14}", s.as_str());
                if !colour {
                    return word;
                }
                let code = match s {
                    Status::Pass => "32",
                    Status::Warn => "33",
                    Status::Fail => "31;1",
                    Status::NotObservable => "2",
                };
                format!("\x1b[{code}m{word}\x1b[0m")
            };
            let mut out = format!("Can {target} be observed?\n\n");
            for f in findings {
                let _ = writeln!(out, "{} {:<40} {}", paint(f.status), f.id, f.summary);
                for e in &f.evidence {
                    let _ = writeln!(out, "{:15}{:40}   {e}", "", "");
                }
                if matches!(f.status, Status::Warn | Status::Fail) {
                    let _ = writeln!(out, "{:15}{:40}   fix: {}", "", "", f.fix);
                }
            }
            for p in problems {
                let _ = writeln!(out, "\ncould not read: {p}");
            }
            let _ = writeln!(out, "\n{}", counts.line());
            out
        }
    }
}

/// The exit status: 2 when an input could not be read, 1 with a `fail`
/// (or a `warn` with `fail_on_warn`), else 0.
pub fn exit_code(findings: &[Finding], problems: &[String], fail_on_warn: bool) -> i32 {
    let c = Counts::of(findings);
    if !problems.is_empty() {
        2
    } else if c.fail > 0 || (fail_on_warn && c.warn > 0) {
        1
    } else {
        0
    }
}
