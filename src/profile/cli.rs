//! Profiles for the config and the command line: `[[profiles]]` attached to an engine,
//! `driftwatch baseline` and `driftwatch baseline show`.

use std::fmt::Write as _;
use std::path::Path;

use crate::config::Config;
use crate::engine::Engine;

use super::{build_profile, read_profile, show_path, write_profile, BaselineOptions, ColumnKind, ProfileError};

/// Attaches every `[[profiles]]` entry of `cfg` to `engine`. Call before any event. Relative
/// paths are relative to the working directory.
pub fn load_profiles(cfg: &Config, engine: &mut Engine) -> Result<(), ProfileError> {
    for entry in &cfg.profiles {
        let p = show_path(&entry.path);
        let profile = read_profile(&entry.path)?;
        if let Some(m) = profile.meta.model.as_deref().filter(|m| *m != entry.model) {
            return Err(ProfileError::Mismatch {
                path: p,
                message: format!(
                    "built for model `{m}` but attached to model `{}` in [[profiles]]; rebuild it with --model {} or fix the config",
                    entry.model, entry.model
                ),
            });
        }
        if let (Some(pv), Some(cv)) = (profile.meta.version.as_deref(), entry.version.as_deref()) {
            if pv != cv {
                return Err(ProfileError::Mismatch {
                    path: p,
                    message: format!(
                        "built for version `{pv}` of `{}` but attached to version `{cv}` in [[profiles]]",
                        entry.model
                    ),
                });
            }
        }
        let reference = profile.to_reference(&p)?;
        engine.attach_profile(&entry.model, entry.version.as_deref(), reference);
    }
    Ok(())
}

/// What `driftwatch baseline` tells its user on stderr.
#[derive(Debug, Clone, PartialEq)]
pub struct BaselineReport {
    /// What was profiled, the task used and how it was decided, skipped columns (`--quiet`
    /// leaves it out).
    pub summary: String,
    /// What may be wrong with the profile (shown even with `--quiet`).
    pub warnings: Vec<String>,
}

/// `driftwatch baseline`: profiles `opts.input` into `out`; returns what to tell the user.
pub fn run_baseline(opts: &BaselineOptions, out: &Path) -> Result<BaselineReport, ProfileError> {
    let (profile, stats) = build_profile(opts)?;
    write_profile(out, &profile)?;
    let secs = stats.elapsed.as_secs_f64().max(1e-9);
    let mut s = format!(
        "profiled {} rows × {} features of {} ({:.1} MB) in {:.2} s ({:.0} rows/s) → {}",
        stats.rows,
        profile.features.len(),
        show_path(&opts.input),
        stats.bytes as f64 / 1e6,
        secs,
        stats.rows as f64 / secs,
        show_path(out)
    );
    let _ = write!(s, "\n{}", stats.task.summary);
    for skipped in &profile.meta.skipped_columns {
        let _ = write!(s, "\nskipped column {skipped}");
    }
    Ok(BaselineReport { summary: s, warnings: stats.task.warning.into_iter().collect() })
}

fn fmt_num(x: Option<f64>) -> String {
    match x {
        None => "-".into(),
        Some(x) if x != 0.0 && (x.abs() >= 1e6 || x.abs() < 1e-3) => format!("{x:.3e}"),
        Some(x) => format!("{x:.4}").trim_end_matches('0').trim_end_matches('.').to_owned(),
    }
}

/// `driftwatch baseline show`: a readable summary of a profile file.
pub fn show(path: &Path) -> Result<String, ProfileError> {
    let profile = read_profile(path)?;
    let m = &profile.meta;
    let mut s = String::new();
    let _ = writeln!(s, "profile {}", show_path(path));
    let _ = writeln!(
        s,
        "  model:    {} version {}",
        m.model.as_deref().unwrap_or("(any)"),
        m.version.as_deref().unwrap_or("(any)")
    );
    let _ = writeln!(s, "  source:   {} ({} rows, sha256 {})", m.source_file, m.rows, m.source_sha256);
    let _ = writeln!(
        s,
        "  created:  {} by driftwatch {} (profile layout {})",
        m.created_at, m.driftwatch_version, m.profile_version
    );
    match (m.accuracy, m.mae) {
        (Some(a), _) => {
            let _ = writeln!(s, "  accuracy: {:.4} ({} of {} labelled rows)", a, m.correct.unwrap_or(0), m.labelled);
        }
        (None, Some(mae)) => {
            let _ = writeln!(s, "  MAE:      {} over {} labelled rows", fmt_num(Some(mae)), m.labelled);
        }
        _ => {
            let _ = writeln!(s, "  accuracy: - (no `prediction` and `label` columns)");
        }
    }
    let task = match m.task {
        Some(t) if m.task_given => format!("{} (given with --task)", t.as_str()),
        Some(t) => format!("{} (inferred from the column types)", t.as_str()),
        None if profile.prediction.is_none() && m.labelled == 0 => "- (no `prediction` or `label` column)".to_owned(),
        None => "- (not recorded in this profile)".to_owned(),
    };
    let _ = writeln!(s, "  task:     {task}");
    for sk in &m.skipped_columns {
        let _ = writeln!(s, "  skipped:  {sk}");
    }
    let _ = writeln!(s, "\n{:<20} {:<11} {:>8} {:>10} {:>10}  bins", "feature", "kind", "missing", "mean", "std");
    for c in profile.features.iter().chain(&profile.prediction) {
        let n = c.bin_freqs.len();
        let missing = c.bin_freqs.get(n.wrapping_sub(2)).copied().unwrap_or(0.0);
        let bins = match c.kind {
            ColumnKind::Numeric => {
                let edges: Vec<String> = c.bin_edges.iter().map(|e| fmt_num(Some(*e))).collect();
                format!("{} quantile bins, edges {}", c.bin_edges.len() + 1, edges.join(" | "))
            }
            ColumnKind::Categorical => {
                let mut parts: Vec<String> = c
                    .categories
                    .iter()
                    .zip(&c.bin_freqs)
                    .take(8)
                    .map(|(k, f)| format!("{k} {:.1}%", f * 100.0))
                    .collect();
                if c.categories.len() > 8 {
                    parts.push(format!("… {} more", c.categories.len() - 8));
                }
                let other = c.bin_freqs.last().copied().unwrap_or(0.0);
                parts.push(format!("other {:.1}%", other * 100.0));
                parts.join(", ")
            }
        };
        let _ = writeln!(
            s,
            "{:<20} {:<11} {:>7.2}% {:>10} {:>10}  {}",
            c.name,
            c.kind.as_str(),
            missing * 100.0,
            fmt_num(c.mean),
            fmt_num(c.std),
            bins
        );
    }
    Ok(s)
}
