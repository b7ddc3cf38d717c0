//! Project files (issue 18): `git dits deps` on a project `melt` wrote, the pre-commit
//! check (`dits.checkDeps`) stopping a commit that leaves media behind, dependencies read
//! at any revision without the media, relink rules, and `pull-media --for` fetching
//! exactly a project's media.

use std::path::Path;
use std::process::Command;

use dits_tests::{duration_secs, media, melt, same_bytes, TestEnv};

fn deps_json(env: &TestEnv, repo: &Path, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["dits", "deps", "--json"];
    full.extend_from_slice(args);
    serde_json::from_str(&env.git(repo, &full)).unwrap()
}

/// For each reference of a `deps --json` answer, the values of `keys` ("-" for null).
fn columns(json: &serde_json::Value, keys: &[&str]) -> Vec<Vec<String>> {
    json["references"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            keys.iter()
                .map(|k| r[*k].as_str().unwrap_or("-").to_string())
                .collect()
        })
        .collect()
}

/// A repository with two clips and a melt project naming both, only one clip added.
fn project_repo(env: &TestEnv) -> std::path::PathBuf {
    let repo = env.repo("r");
    std::fs::create_dir_all(repo.join("footage")).unwrap();
    std::fs::copy(media().path("base.mp4"), repo.join("footage/take 1.mp4")).unwrap();
    std::fs::copy(media().path("rewrap.mov"), repo.join("footage/take 2.mov")).unwrap();
    env.git(&repo, &["add", "footage/take 1.mp4"]);
    env.git(&repo, &["commit", "-q", "-m", "take 1"]);
    melt(
        &repo,
        &["footage/take 1.mp4", "footage/take 2.mov"],
        "film.mlt",
    );
    repo
}

#[test]
fn the_pre_commit_check_names_untracked_media_and_passes_once_it_is_added() {
    let env = TestEnv::new();
    let repo = project_repo(&env);
    env.git(&repo, &["dits", "install", "--local", "--check-deps"]);

    let json = deps_json(&env, &repo, &["film.mlt"]);
    assert_eq!(
        columns(&json, &["resolved", "status"]),
        [
            ["footage/take 1.mp4", "tracked"],
            ["footage/take 2.mov", "untracked"]
        ]
    );
    let check = env.git_output(&repo, &["dits", "deps", "--check", "film.mlt"]);
    assert_eq!(check.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&check.stderr).contains("untracked footage/take 2.mov"));

    env.git(&repo, &["add", "film.mlt"]);
    let commits = env.git(&repo, &["rev-list", "--count", "HEAD"]);
    let refused = env.git_output(&repo, &["commit", "-q", "-m", "edit"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "the commit went through: {stderr}"
    );
    assert!(
        stderr.contains("film.mlt: untracked footage/take 2.mov"),
        "{stderr}"
    );
    assert_eq!(env.git(&repo, &["rev-list", "--count", "HEAD"]), commits);

    env.git(&repo, &["add", "footage/take 2.mov"]);
    env.git(&repo, &["commit", "-q", "-m", "edit"]);
    // Recorded with the commit: read back at that revision, with asset ids equal to the
    // pointers' (what `ls-files` reports), after the media is gone from the checkout.
    std::fs::remove_dir_all(repo.join("footage")).unwrap();
    let at_head = deps_json(&env, &repo, &["--rev", "HEAD", "film.mlt"]);
    let listed: serde_json::Value =
        serde_json::from_str(&env.git(&repo, &["dits", "ls-files", "--json"])).unwrap();
    for r in at_head["references"].as_array().unwrap() {
        assert_eq!(r["status"], "tracked", "{r}");
        let oid = listed["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == r["resolved"])
            .map(|f| f["oid"].as_str().unwrap().to_string())
            .unwrap();
        assert_eq!(r["asset"].as_str().unwrap(), format!("blake3:{oid}"));
    }
    // At the first commit the project did not exist yet.
    let before = env.git_output(&repo, &["dits", "deps", "--rev", "HEAD~1", "film.mlt"]);
    assert_eq!(before.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&before.stderr).contains("film.mlt is not in HEAD~1"));
}

/// A project written on another machine (absolute paths there): unresolved at first,
/// found through a committed `.ditsrelink` rule, a personal `dits.relink.*` rule, and by
/// name; a deliberate outside reference passes the check once declared `external`.
#[test]
fn relink_rules_resolve_another_machines_paths() {
    let env = TestEnv::new();
    let repo = project_repo(&env);
    env.git(&repo, &["add", "footage/take 2.mov"]);
    env.git(&repo, &["commit", "-q", "-m", "take 2"]);
    let foreign = r#"<?xml version="1.0" encoding="utf-8"?>
<mlt LC_NUMERIC="C" version="7.12.0" root="/Volumes/SSD_A/Job42">
 <producer id="a"><property name="resource">/Volumes/SSD_A/Job42/footage/take 1.mp4</property><property name="mlt_service">avformat</property></producer>
 <chain id="b"><property name="resource">file:///D:/Rushes/take%202.mov</property><property name="mlt_service">avformat</property></chain>
 <transition id="t"><property name="mlt_service">luma</property><property name="resource">/usr/share/kdenlive/lumas/HD/spiral.pgm</property></transition>
</mlt>"#;
    std::fs::create_dir_all(repo.join("edit")).unwrap();
    std::fs::write(repo.join("edit/foreign.kdenlive"), foreign).unwrap();
    let json = deps_json(&env, &repo, &["edit/foreign.kdenlive"]);
    let how = columns(&json, &["status", "how"]);
    // Found by name before any rule exists; the luma is outside.
    assert_eq!(how[0], ["tracked", "name"]);
    assert_eq!(how[2][0], "outside");

    std::fs::write(
        repo.join(".ditsrelink"),
        "/Volumes/SSD_A/Job42 = .\nexternal /usr/share/kdenlive\n",
    )
    .unwrap();
    env.git(&repo, &["config", "dits.relink.rushes.from", "D:/Rushes"]);
    env.git(&repo, &["config", "dits.relink.rushes.to", "footage"]);
    let json = deps_json(&env, &repo, &["edit/foreign.kdenlive"]);
    let got = columns(&json, &["resolved", "status", "how"]);
    assert_eq!(
        got,
        [
            ["footage/take 1.mp4", "tracked", "rule"],
            ["footage/take 2.mov", "tracked", "rule"],
            ["-", "external", "-"],
        ]
    );
    let check = env.git_output(&repo, &["dits", "deps", "--check", "edit/foreign.kdenlive"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// A clone without media (`GIT_DITS_SKIP_SMUDGE=1`): `pull-media --for` hydrates exactly
/// the project's clips and fetches only their bytes, not the other, bigger clip.
#[test]
fn pull_media_for_a_project_fetches_exactly_its_media() {
    let env = TestEnv::new();
    let (hub, _token) = env.alice_hub();
    let repo = project_repo(&env);
    std::fs::copy(media().path("noise.mp4"), repo.join("footage/other.mp4")).unwrap();
    env.git(&repo, &["add", "."]);
    env.git(&repo, &["commit", "-q", "-m", "all"]);
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    env.git(&repo, &["push", "-q", "origin", "main"]);

    let out = env.clone_with(
        &hub.url("alice/film"),
        "b",
        &[("GIT_DITS_SKIP_SMUDGE", "1")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = env.dir.path().join("b");
    let pulled = env.git_output(&b, &["dits", "pull-media", "--for", "film.mlt"]);
    let stderr = String::from_utf8_lossy(&pulled.stderr);
    assert!(pulled.status.success(), "{stderr}");
    for name in ["footage/take 1.mp4", "footage/take 2.mov"] {
        assert!(same_bytes(&b.join(name), &repo.join(name)), "{name}");
    }
    assert!(std::fs::read(b.join("footage/other.mp4"))
        .unwrap()
        .starts_with(b"dits-pointer v1\n"));
    let fetched: u64 = stderr
        .split(" bytes fetched")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no byte count in: {stderr}"));
    let needed = ["footage/take 1.mp4", "footage/take 2.mov"]
        .iter()
        .map(|n| std::fs::metadata(repo.join(n)).unwrap().len())
        .sum::<u64>();
    let other = std::fs::metadata(repo.join("footage/other.mp4"))
        .unwrap()
        .len();
    eprintln!("fetched {fetched} B for {needed} B of project media (other clip {other} B)");
    assert!(
        fetched > 0 && fetched <= needed + needed / 10,
        "{fetched} vs {needed}"
    );
    assert_eq!(env.git(&b, &["status", "--porcelain"]), "");
}

/// GET `/api/v1/repos/PATH` from the hub, with a bearer token or none: status and body.
fn api_get(hub: &dits_tests::HubProcess, token: Option<&str>, path: &str) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args(["-sk", "-w", "\n%{http_code}", "--max-time", "60"]);
    if let Some(t) = token {
        c.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    c.arg(format!(
        "https://127.0.0.1:{}/api/v1/repos/{path}",
        hub.port
    ));
    let out = c.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Renders `project` with melt in `dir`; its stderr.
fn melt_render(dir: &Path, project: &str, out: &Path) -> String {
    let done = Command::new("melt")
        .arg(project)
        .arg("-consumer")
        .arg(format!("avformat:{}", out.display()))
        .current_dir(dir)
        .output()
        .expect("melt must be installed (scripts/test-deps.sh)");
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    String::from_utf8_lossy(&done.stderr).into_owned()
}

/// The issue's story: a project made on one machine (absolute paths into a folder only
/// that machine has) is committed with a `.ditsrelink` rule; on another machine (a clone
/// from the hub, the folder gone) melt cannot load its clips until `relink --write`
/// points them into the checkout, and then renders the whole edit.
#[test]
fn a_clone_elsewhere_relinks_and_melt_renders_the_project() {
    let env = TestEnv::new();
    let (hub, token) = env.alice_hub();
    let elsewhere = env.dir.path().join("SSD_A");
    std::fs::create_dir_all(elsewhere.join("footage")).unwrap();
    std::fs::create_dir_all(elsewhere.join("edit")).unwrap();
    for (src, name) in [("base.mp4", "take 1.mp4"), ("rewrap.mov", "take&2.mov")] {
        std::fs::copy(media().path(src), elsewhere.join("footage").join(name)).unwrap();
    }
    let abs = |n: &str| {
        elsewhere
            .join("footage")
            .join(n)
            .to_string_lossy()
            .into_owned()
    };
    melt(
        &elsewhere.join("edit"),
        &[&abs("take 1.mp4"), &abs("take&2.mov")],
        "film.mlt",
    );
    let project = std::fs::read_to_string(elsewhere.join("edit/film.mlt")).unwrap();
    assert!(project.contains(&abs("take 1.mp4")) && project.contains("take&amp;2.mov"));

    let repo = env.repo("a");
    std::fs::create_dir_all(repo.join("footage")).unwrap();
    std::fs::create_dir_all(repo.join("edit")).unwrap();
    for name in ["take 1.mp4", "take&2.mov"] {
        std::fs::copy(
            elsewhere.join("footage").join(name),
            repo.join("footage").join(name),
        )
        .unwrap();
    }
    std::fs::copy(elsewhere.join("edit/film.mlt"), repo.join("edit/film.mlt")).unwrap();
    std::fs::write(
        repo.join(".ditsrelink"),
        format!("{} = footage\n", elsewhere.join("footage").display()),
    )
    .unwrap();
    env.git(&repo, &["add", "."]);
    env.git(&repo, &["commit", "-q", "-m", "edit"]);
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    env.git(&repo, &["push", "-q", "origin", "main"]);

    // The hub answers the same dependencies from its mirror, without media.
    let (code, body) = api_get(&hub, Some(&token), "alice/film/deps?path=edit/film.mlt");
    assert_eq!(code, 200, "{body}");
    let from_hub: serde_json::Value = serde_json::from_str(&body).unwrap();
    let from_client = deps_json(&env, &repo, &["--rev", "HEAD", "edit/film.mlt"]);
    let pick = |j: &serde_json::Value| columns(j, &["resolved", "status", "asset"]);
    assert_eq!(pick(&from_hub), pick(&from_client));
    assert!(pick(&from_hub)
        .iter()
        .all(|c| c[1] == "tracked" && c[2].starts_with("blake3:")));
    assert_eq!(
        api_get(&hub, None, "alice/film/deps?path=edit/film.mlt").0,
        401
    );
    assert_eq!(
        api_get(&hub, Some(&token), "alice/film/deps?path=edit/none.mlt").0,
        404
    );
    assert_eq!(
        api_get(
            &hub,
            Some(&token),
            "alice/film/deps?path=edit/film.mlt&rev=nosuch"
        )
        .0,
        404
    );

    // Recorded in the hub's commit index when the push was indexed (in the background
    // after the push was answered: wait for it), and shown by `repo log`.
    let started = std::time::Instant::now();
    let log = loop {
        let json = hub.admin(&["repo", "log", "alice/film", "--json"]);
        let log: serde_json::Value = serde_json::from_str(&json).unwrap();
        if log.as_array().is_some_and(|a| !a.is_empty()) {
            break log;
        }
        assert!(started.elapsed().as_secs() < 20, "commit index: {json}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let projects = log[0]["projects"].as_array().unwrap();
    assert_eq!(projects.len(), 1, "{log}");
    assert_eq!(projects[0]["project"], "edit/film.mlt");
    let recorded = serde_json::json!({"references": projects[0]["deps"]});
    assert_eq!(pick(&recorded), pick(&from_client));
    let text = hub.admin(&["repo", "log", "alice/film"]);
    assert!(
        text.contains("project edit/film.mlt  2 references\n"),
        "{text}"
    );
    assert!(
        text.contains("tracked   original footage/take&2.mov  blake3:"),
        "{text}"
    );

    std::fs::remove_dir_all(&elsewhere).unwrap();
    let out = env.clone_with(&hub.url("alice/film"), "b", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = env.dir.path().join("b");
    let check = env.git_output(&b, &["dits", "deps", "--check", "edit/film.mlt"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let before = melt_render(&b, "edit/film.mlt", &env.dir.path().join("before.mp4"));
    assert!(before.contains("failed to load producer"), "{before}");
    let listed = env.git(&b, &["dits", "relink", "edit/film.mlt"]);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert_eq!(
        env.git(&b, &["status", "--porcelain"]),
        "",
        "a listing changes nothing"
    );
    env.git(&b, &["dits", "relink", "--write", "edit/film.mlt"]);
    assert!(b.join("edit/film.mlt.bak").exists());
    let relinked = std::fs::read_to_string(b.join("edit/film.mlt")).unwrap();
    assert!(
        relinked.contains(&format!("{}/footage/take&amp;2.mov", b.display())),
        "{relinked}"
    );

    let rendered = env.dir.path().join("after.mp4");
    let after = melt_render(&b, "edit/film.mlt", &rendered);
    assert!(!after.contains("failed to load"), "{after}");
    let expected =
        duration_secs(&b.join("footage/take 1.mp4")) + duration_secs(&b.join("footage/take&2.mov"));
    let got = duration_secs(&rendered);
    assert!(
        (got - expected).abs() < 0.5,
        "rendered {got} s, clips {expected} s"
    );
}

/// OpenTimelineIO's own writers (its JSON, and its CMX 3600 and FCPXML 1.8 adapters)
/// write one timeline whose first clip sits on another machine (a percent-encoded
/// `file://` URL) and whose second is relative; every format resolves both clips to the
/// same tracked files and asset ids.
#[test]
fn timelines_written_by_opentimelineio_resolve_in_every_format() {
    let env = TestEnv::new();
    let repo = project_repo(&env);
    env.git(&repo, &["add", "footage/take 2.mov"]);
    env.git(&repo, &["commit", "-q", "-m", "take 2"]);
    std::fs::write(repo.join(".ditsrelink"), "/Volumes/SSD A = footage\n").unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("../target/otio-venv/bin/python");
    let done = Command::new(&python)
        .arg(root.join("fixtures/otio_timeline.py"))
        .args([
            "film.otio,film.edl,film.fcpxml",
            "file:///Volumes/SSD%20A/take%201.mp4",
            "footage/take 2.mov",
        ])
        .current_dir(&repo)
        .output()
        .expect(
            "OpenTimelineIO must be installed (scripts/test-deps.sh puts it in target/otio-venv)",
        );
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let fcpxml = std::fs::read_to_string(repo.join("film.fcpxml")).unwrap();
    assert!(
        fcpxml.contains("src=\"file:///Volumes/SSD%20A/take%201.mp4\""),
        "{fcpxml}"
    );
    let mut answers = Vec::new();
    for (project, how) in [
        ("film.otio", ["rule", "exact"]),
        ("film.fcpxml", ["rule", "exact"]),
        ("film.edl", ["name", "name"]),
    ] {
        let json = deps_json(&env, &repo, &[project]);
        let got = columns(&json, &["resolved", "status", "how", "asset"]);
        assert_eq!(got.len(), 2, "{project}: {json}");
        for (row, expected) in got.iter().zip(how) {
            assert_eq!(row[1], "tracked", "{project}: {json}");
            assert_eq!(row[2], expected, "{project}: {json}");
        }
        answers.push(
            got.into_iter()
                .map(|r| (r[0].clone(), r[3].clone()))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], answers[2]);
    assert_eq!(answers[0][0].0, "footage/take 1.mp4");
}

/// Projects that are not one plain file: a Final Cut `.fcpxmld` bundle (FCPXML 1.10
/// `media-rep` elements for the original and its proxy, percent-encoded non-ASCII
/// `file://` URLs), a gzip-compressed Premiere `.prproj` with Windows paths, a
/// `RelativePath` and a preview render, and an `.otioz` OpenTimelineIO wrote with the
/// clips inside it. The `.prproj` relinks to this checkout and stays gzip-compressed.
#[test]
fn bundles_and_compressed_projects_resolve_and_relink() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    std::fs::create_dir_all(repo.join("footage")).unwrap();
    std::fs::create_dir_all(repo.join("edit/cut.fcpxmld")).unwrap();
    std::fs::copy(media().path("base.mp4"), repo.join("footage/täke 1.mp4")).unwrap();
    std::fs::copy(media().path("rewrap.mov"), repo.join("footage/take 2.mov")).unwrap();
    std::fs::write(repo.join(".ditsrelink"), "/Volumes/SSD A/Job42 = .\n").unwrap();

    let src = |path: &str| format!("file:///Volumes/SSD%20A/Job42/{path}");
    std::fs::write(
        repo.join("edit/cut.fcpxmld/Info.fcpxml"),
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE fcpxml>
<fcpxml version="1.10">
  <resources>
    <format id="r1" name="FFVideoFormat360p25" frameDuration="100/2500s" width="640" height="360"/>
    <asset id="r2" name="täke 1" start="0s" duration="8s" hasVideo="1" hasAudio="1" format="r1">
      <media-rep kind="original-media" src="{}"/>
      <media-rep kind="proxy-media" src="{}"/>
    </asset>
    <asset id="r3" name="take 2" start="0s" duration="8s" hasVideo="1" format="r1">
      <media-rep kind="original-media" src="{}"/>
    </asset>
  </resources>
  <library>
    <event name="Job42">
      <project name="cut">
        <sequence format="r1" duration="16s">
          <spine>
            <asset-clip ref="r2" offset="0s" duration="8s" name="täke 1"/>
            <asset-clip ref="r3" offset="8s" duration="8s" name="take 2"/>
          </spine>
        </sequence>
      </project>
    </event>
  </library>
</fcpxml>
"#,
            src("footage/t%C3%A4ke%201.mp4"),
            src("Transcoded%20Media/Proxy%20Media/t%C3%A4ke%201.mov"),
            src("footage/take%202.mov"),
        ),
    )
    .unwrap();

    let premiere = r#"<?xml version="1.0" encoding="UTF-8" ?>
<PremiereData Version="3">
<Media ObjectUID="a"><FilePath>C:\Footage\Job42\täke 1.mp4</FilePath><ActualMediaFilePath>C:\Footage\Job42\täke 1.mp4</ActualMediaFilePath><RelativePath>..\footage\täke 1.mp4</RelativePath></Media>
<Media ObjectUID="b"><ActualMediaFilePath>D:\Other Drive\take 2.mov</ActualMediaFilePath></Media>
<Media ObjectUID="c"><FilePath>C:\Footage\Job42\Adobe Premiere Pro Video Previews\cut.PRV\Rendered - 1.mxf</FilePath></Media>
</PremiereData>
"#;
    std::fs::write(repo.join("edit/cut.xml"), premiere).unwrap();
    let zipped = Command::new("gzip")
        .args(["-n", "-c", "edit/cut.xml"])
        .current_dir(&repo)
        .output()
        .unwrap();
    assert!(zipped.status.success());
    std::fs::write(repo.join("edit/cut.prproj"), &zipped.stdout).unwrap();
    std::fs::remove_file(repo.join("edit/cut.xml")).unwrap();

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let done = Command::new(root.join("../target/otio-venv/bin/python"))
        .arg(root.join("fixtures/otio_timeline.py"))
        .args([
            "edit/cut.otioz",
            &format!("file://{}/footage/t%C3%A4ke%201.mp4", repo.display()),
            "footage/take 2.mov",
        ])
        .current_dir(&repo)
        .output()
        .expect("OpenTimelineIO must be installed (scripts/test-deps.sh)");
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    env.git(&repo, &["add", "."]);
    env.git(&repo, &["commit", "-q", "-m", "cut"]);

    // The bundle is named by its folder; the proxy is flagged, as a proxy.
    let json = deps_json(&env, &repo, &["edit/cut.fcpxmld"]);
    assert_eq!(
        columns(&json, &["resolved", "role", "status", "how"]),
        [
            ["footage/täke 1.mp4", "original", "tracked", "rule"],
            [
                "Transcoded Media/Proxy Media/täke 1.mov",
                "proxy",
                "missing",
                "-"
            ],
            ["footage/take 2.mov", "original", "tracked", "rule"],
        ],
        "{json}"
    );
    let check = env.git_output(&repo, &["dits", "deps", "--check", "edit/cut.fcpxmld"]);
    assert_eq!(check.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&check.stderr)
        .contains("missing Transcoded Media/Proxy Media/täke 1.mov"));

    // Premiere: RelativePath first, then the name (the preview render is no dependency).
    let json = deps_json(&env, &repo, &["edit/cut.prproj"]);
    assert_eq!(
        columns(&json, &["raw", "resolved", "status", "how"]),
        [
            [
                "C:\\Footage\\Job42\\täke 1.mp4",
                "footage/täke 1.mp4",
                "tracked",
                "project-relative"
            ],
            [
                "D:\\Other Drive\\take 2.mov",
                "footage/take 2.mov",
                "tracked",
                "name"
            ],
        ],
        "{json}"
    );
    env.git(&repo, &["dits", "relink", "--write", "edit/cut.prproj"]);
    let relinked = std::fs::read(repo.join("edit/cut.prproj")).unwrap();
    assert_eq!(
        &relinked[..2],
        &[0x1f, 0x8b],
        "relink kept it gzip-compressed"
    );
    assert_eq!(
        std::fs::read(repo.join("edit/cut.prproj.bak")).unwrap(),
        zipped.stdout
    );
    let json = deps_json(&env, &repo, &["edit/cut.prproj"]);
    assert_eq!(
        columns(&json, &["resolved", "how"]),
        [
            ["footage/täke 1.mp4", "exact"],
            ["footage/take 2.mov", "exact"]
        ],
        "{json}"
    );

    // The .otioz carries its clips: nothing outside it is needed, and nothing to relink.
    let json = deps_json(&env, &repo, &["edit/cut.otioz"]);
    assert_eq!(json["references"].as_array().unwrap().len(), 0, "{json}");
    env.git(&repo, &["dits", "deps", "--check", "edit/cut.otioz"]);
    let bundle = std::fs::read(repo.join("edit/cut.otioz")).unwrap();
    let relink = env.git_output(&repo, &["dits", "relink", "--write", "edit/cut.otioz"]);
    assert!(relink.status.success());
    assert!(String::from_utf8_lossy(&relink.stderr).contains("nothing to relink"));
    assert_eq!(std::fs::read(repo.join("edit/cut.otioz")).unwrap(), bundle);
}
