//! What "the paths a push changes" means, shared by the hub (which refuses changes to paths
//! someone else has locked) and the client (which releases its locks after a push with
//! `dits.unlockAfterPush`): the paths `git log` names for the commits on NEW's first-parent
//! line that are not reachable from the excluded tips, a merge counting as what it brings in.

/// `git` arguments: these, then NEW, then `--not` and the tips to exclude. Excluded tips
/// the repository lacks are ignored.
pub fn log_args<'a>(new: &'a str, exclude: &'a [String]) -> Vec<&'a str> {
    let mut args = vec![
        "log",
        "--format=",
        "--name-only",
        "-z",
        "--no-renames",
        "--first-parent",
        "--diff-merges=first-parent",
        "--ignore-missing",
        new,
    ];
    if !exclude.is_empty() {
        args.push("--not");
        args.extend(exclude.iter().map(String::as_str));
    }
    args
}

/// The paths in that `git log`'s output, sorted, each once.
pub fn parse(stdout: &[u8]) -> Vec<String> {
    let mut paths: Vec<String> = stdout
        .split(|b| *b == 0)
        .map(|p| String::from_utf8_lossy(p).trim_matches('\n').to_string())
        .filter(|p| !p.is_empty())
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

#[cfg(test)]
mod tests {
    #[test]
    fn output_is_split_trimmed_sorted_and_deduplicated() {
        let out = b"\nb.mov\0a.mp4\0\n\nb.mov\0";
        assert_eq!(super::parse(out), vec!["a.mp4", "b.mov"]);
        assert_eq!(super::log_args("N", &[]).last(), Some(&"N"));
        let ex = vec!["O".to_string()];
        assert_eq!(&super::log_args("N", &ex)[9..], ["--not", "O"]);
    }
}
