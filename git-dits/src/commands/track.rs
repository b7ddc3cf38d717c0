//! `git dits track` / `untrack`: edit `.gitattributes` at the top of the working tree the
//! way `git lfs track` does.

use std::fs;

use anyhow::{Context, Result};

use git_remote_dits::git;

pub(crate) const ATTRIBUTES: &str = "filter=dits diff=dits merge=binary -text";

/// Spaces in a gitattributes pattern must be written as `[[:space:]]`.
pub(crate) fn escape(pattern: &str) -> String {
    pattern.replace(' ', "[[:space:]]")
}

fn is_dits_line(line: &str) -> Option<&str> {
    let mut parts = line.split_whitespace();
    let pattern = parts.next()?;
    if pattern.starts_with('#') {
        return None;
    }
    parts.any(|a| a == "filter=dits").then_some(pattern)
}

fn pattern_is_lockable(text: &str, pattern: &str) -> bool {
    text.lines().any(|l| {
        is_dits_line(l) == Some(pattern) && l.split_whitespace().skip(1).any(|a| a == "lockable")
    })
}

/// Adds `lockable` to the Dits line for `pattern`.
fn make_lockable(text: &str, pattern: &str) -> String {
    text.lines()
        .map(|l| {
            if is_dits_line(l) == Some(pattern) {
                format!("{} lockable\n", l.trim_end())
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

pub fn track(patterns: &[String], lockable: bool) -> Result<()> {
    let path = git::top_level()?.join(".gitattributes");
    let mut text = fs::read_to_string(&path).unwrap_or_default();
    let tracked: Vec<String> = text
        .lines()
        .filter_map(is_dits_line)
        .map(str::to_string)
        .collect();
    if patterns.is_empty() {
        println!("Listing tracked patterns");
        for p in &tracked {
            println!("    {p} (.gitattributes)");
        }
        return Ok(());
    }
    for pattern in patterns {
        let escaped = escape(pattern);
        if tracked.contains(&escaped) {
            if lockable && !pattern_is_lockable(&text, &escaped) {
                text = make_lockable(&text, &escaped);
                println!("\"{pattern}\" is now lockable");
            } else {
                println!("\"{pattern}\" already supported");
            }
            continue;
        }
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!(
            "{escaped} {ATTRIBUTES}{}\n",
            if lockable { " lockable" } else { "" }
        ));
        println!("Tracking \"{pattern}\"");
    }
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

pub fn untrack(patterns: &[String]) -> Result<()> {
    let path = git::top_level()?.join(".gitattributes");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let wanted: Vec<String> = patterns.iter().map(|p| escape(p)).collect();
    let mut kept = String::new();
    for line in text.lines() {
        match is_dits_line(line) {
            Some(p) if wanted.iter().any(|w| w == p) => println!("Untracking \"{p}\""),
            _ => {
                kept.push_str(line);
                kept.push('\n');
            }
        }
    }
    fs::write(&path, kept).with_context(|| format!("writing {}", path.display()))
}
