//! `reclaim check`: validate a daemon.json and print the effective BuildKit
//! GC rules and the diagnostics.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use reclaim_policy::Rule;
use reclaim_policy::config::{self, Diagnostic, Origin, Severity};
use serde_json::{Value, json};

use crate::table::{self, Align, Table};
use crate::util;

/// Arguments of `reclaim check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The daemon.json to check (`-` reads standard input).
    pub file: PathBuf,
    /// Disk size used for the default policy (Docker size syntax: `100GB` is
    /// 100 GiB). Default: the size of the file system holding --data-root,
    /// or "unreadable" (dockerd's 2 GB fallback) if it cannot be read.
    #[arg(long, value_name = "SIZE")]
    pub disk_size: Option<String>,
    /// dockerd's data root, whose file system sizes the default policy when
    /// --disk-size is not given.
    #[arg(long, value_name = "PATH", default_value = "/var/lib/docker")]
    pub data_root: PathBuf,
    /// Daemon start time, which freezes `until` filters into ages (RFC 3339
    /// or Unix seconds). Default: now.
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command: exit code 0 when dockerd would accept the file, 1 when
/// it would refuse it.
pub fn run(args: &Args) -> Result<ExitCode> {
    let text = if args.file == Path::new("-") {
        std::io::read_to_string(std::io::stdin())?
    } else {
        util::read_text(&args.file)?
    };
    let now = util::parse_now(args.now.as_deref())?;
    let (disk_total, disk_source) = match &args.disk_size {
        Some(size) => (
            Some(util::parse_size("--disk-size", size)?),
            "--disk-size".to_owned(),
        ),
        None => match util::disk_total(&args.data_root) {
            Some(total) => (
                Some(total),
                format!("file system of {}", args.data_root.display()),
            ),
            None => (
                None,
                format!("{} is not readable", args.data_root.display()),
            ),
        },
    };
    let name = args.file.display().to_string();

    let (gc, diagnostics) = match config::parse(&text) {
        Ok(parsed) => parsed,
        Err(err) => {
            let error = json!({
                "stage": "json",
                "message": err.to_string(),
                "origin": err.origin().map(origin_json),
            });
            return report_invalid(args.json, &name, &error, &[]);
        }
    };
    match config::effective_rules(&gc, disk_total, now) {
        Err(err) => {
            let error = json!({
                "stage": "buildkit_init",
                "message": err.to_string(),
                "dockerd_message": format!("error initializing buildkit: error creating buildkit instance: {err}"),
                "rule": err.rule(),
                "origin": err.origin().map(origin_json),
            });
            report_invalid(args.json, &name, &error, &diagnostics)
        }
        Ok(effective) => {
            if args.json {
                util::print_json(&json!({
                    "file": name,
                    "valid": true,
                    "gc_enabled": effective.enabled,
                    "default_policy": gc.enabled && gc.policy.is_none(),
                    "disk_total": disk_total,
                    "rules": effective.rules.iter().map(rule_json).collect::<Vec<_>>(),
                    "diagnostics": diagnostics.iter().map(diagnostic_json).collect::<Vec<_>>(),
                    "error": Value::Null,
                }))?;
                return Ok(ExitCode::SUCCESS);
            }
            println!("{name}: valid, dockerd would accept it");
            let policy = match (&gc.policy, effective.enabled) {
                (_, false) => "disabled".to_owned(),
                (None, true) => match disk_total {
                    Some(total) => format!(
                        "enabled, default policy for a {} disk ({disk_source})",
                        reclaim_model::ByteSize(total)
                    ),
                    None => {
                        format!("enabled, default policy for an unreadable disk ({disk_source})")
                    }
                },
                (Some(_), true) => "enabled, policy from the file".to_owned(),
            };
            println!("builder.gc: {policy}; {} rule(s)", effective.rules.len());
            if !effective.rules.is_empty() {
                println!();
                print!("{}", rules_table(&effective.rules).render(2));
            }
            print_diagnostics(&diagnostics);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn report_invalid(
    as_json: bool,
    name: &str,
    error: &Value,
    diagnostics: &[Diagnostic],
) -> Result<ExitCode> {
    if as_json {
        util::print_json(&json!({
            "file": name,
            "valid": false,
            "diagnostics": diagnostics.iter().map(diagnostic_json).collect::<Vec<_>>(),
            "error": error,
        }))?;
    } else {
        println!("{name}: INVALID, dockerd would refuse to start");
        let place = error["origin"]["path"]
            .as_str()
            .map(|p| {
                format!(
                    " at {p} (line {}, column {})",
                    error["origin"]["line"], error["origin"]["column"]
                )
            })
            .unwrap_or_default();
        println!(
            "  error{place}: {}",
            error["message"].as_str().unwrap_or("")
        );
        if let Some(full) = error["dockerd_message"].as_str() {
            println!("  dockerd would log: {full}");
        }
        print_diagnostics(diagnostics);
    }
    Ok(ExitCode::from(1))
}

/// The rules as a table: one row per rule with its numbers.
pub fn rules_table(rules: &[Rule]) -> Table {
    let mut t = Table::new(&[
        ("#", Align::Right),
        ("all", Align::Left),
        ("filter", Align::Left),
        ("keep-duration", Align::Right),
        ("reserved", Align::Right),
        ("max-used", Align::Right),
        ("min-free", Align::Right),
    ]);
    for (i, rule) in rules.iter().enumerate() {
        let filter = match rule.filter.as_slice() {
            [] => "(all records)".to_owned(),
            [one] if one.is_empty() => "(all records)".to_owned(),
            many => many.join(" OR "),
        };
        t.row(vec![
            i.to_string(),
            if rule.all { "yes" } else { "no" }.to_owned(),
            filter,
            if rule.keep_duration.is_zero() {
                "-".to_owned()
            } else {
                rule.keep_duration.to_string()
            },
            table::bytes(rule.reserved_space),
            table::bytes(rule.max_used_space),
            table::bytes(rule.min_free_space),
        ]);
    }
    t
}

fn print_diagnostics(diagnostics: &[Diagnostic]) {
    if diagnostics.is_empty() {
        return;
    }
    let warnings = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .count();
    println!(
        "\n{} diagnostic(s), {warnings} warning(s):",
        diagnostics.len()
    );
    for d in diagnostics {
        println!("  {d}");
    }
}

/// A rule as JSON (sizes in bytes, the age limit as Go text and in seconds).
pub fn rule_json(rule: &Rule) -> Value {
    json!({
        "all": rule.all,
        "filter": rule.filter,
        "keep_duration": rule.keep_duration.to_string(),
        "keep_duration_seconds": rule.keep_duration.as_nanos() as f64 / 1e9,
        "reserved_space": rule.reserved_space,
        "max_used_space": rule.max_used_space,
        "min_free_space": rule.min_free_space,
    })
}

fn diagnostic_json(d: &Diagnostic) -> Value {
    json!({
        "severity": match d.severity { Severity::Warning => "warning", _ => "note" },
        "code": d.code.as_str(),
        "origin": d.origin.as_ref().map(origin_json),
        "message": d.message,
    })
}

fn origin_json(o: &Origin) -> Value {
    json!({ "path": o.path, "line": o.line, "column": o.column })
}
