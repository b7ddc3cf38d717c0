//! The job queue and its workers (issue 19): a scrub finds a flipped byte in a stored
//! pack, reports it (`fsck`, `/metrics`) and takes the object out of the index so the
//! next push holding it stores it again; two workers on one queue hold different jobs,
//! and a `kill -9`'d worker's job is taken over once its lease runs out. Both passes:
//! SQLite + local directory, and PostgreSQL + S3.

use std::io::BufRead;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use dits_tests::{containers, media, same_bytes, HubProcess, TestEnv};

fn jobs(hub: &HubProcess) -> Vec<serde_json::Value> {
    let json = hub.admin(&["jobs", "--json", "--limit", "1000"]);
    serde_json::from_str::<serde_json::Value>(&json)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until every job is done (or one is dead: a failure the test reports).
fn all_done(hub: &HubProcess) -> Vec<serde_json::Value> {
    let started = Instant::now();
    loop {
        let jobs = jobs(hub);
        assert!(
            jobs.iter().all(|j| j["state"] != "dead"),
            "a job died: {jobs:?}"
        );
        if !jobs.is_empty() && jobs.iter().all(|j| j["state"] == "done") {
            return jobs;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{jobs:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn fsck(hub: &HubProcess) -> (i32, serde_json::Value) {
    let out = hub.admin_command(&["fsck", "--json"]).output().unwrap();
    (
        out.status.code().unwrap(),
        serde_json::from_slice(&out.stdout).unwrap(),
    )
}

fn metric(hub: &HubProcess, line_start: &str) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sk", &format!("https://127.0.0.1:{}/metrics", hub.port)])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with(line_start))
        .unwrap_or_else(|| panic!("no {line_start} in /metrics"))
        .to_string()
}

#[test]
fn a_scrub_finds_a_flipped_byte_and_the_next_push_stores_the_object_again() {
    let env = TestEnv::new();
    let (hub, _) = env.alice_hub();
    let repo = env.repo("a");
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    env.commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    env.git(&repo, &["push", "-q", "origin", "main"]);

    // A clean scrub (the serving hub's own worker runs it) finds nothing.
    hub.admin(&["scrub"]);
    let done = all_done(&hub);
    assert!(done.iter().all(|j| j["kind"] == "scrub"), "{done:?}");
    assert_eq!(
        fsck(&hub),
        (0, serde_json::json!({"corrupt": [], "unrepaired": 0}))
    );

    let pack = hub.flip_a_byte_in_a_chunk_pack();
    hub.admin(&["scrub"]);
    all_done(&hub);
    let (code, report) = fsck(&hub);
    assert_eq!(code, 1, "{report}");
    let corrupt = report["corrupt"].as_array().unwrap();
    assert_eq!(
        corrupt.len(),
        1,
        "one object holds the flipped byte: {report}"
    );
    assert_eq!(corrupt[0]["pack"], pack.as_str());
    assert_eq!(corrupt[0]["repaired"], false);
    assert_eq!(
        metric(&hub, "dits_corrupt_objects "),
        "dits_corrupt_objects 1"
    );
    let scrubs_done = metric(&hub, "dits_jobs{kind=\"scrub\",state=\"done\"}");
    let count: u64 = scrubs_done.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 1, "{scrubs_done}");

    // The client still holds the clip: committing it again makes the push ask about
    // every chunk, and the one taken out of the index is sent and stored again.
    std::fs::copy(media().path("base.mp4"), repo.join("again.mp4")).unwrap();
    env.git(&repo, &["add", "again.mp4"]);
    env.git(&repo, &["commit", "-q", "-m", "again"]);
    env.git(&repo, &["push", "-q", "origin", "main"]);
    let (code, report) = fsck(&hub);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["corrupt"][0]["repaired"], true);
    let out = env.clone_with(&hub.url("alice/film"), "b", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = env.dir.path().join("b");
    assert!(same_bytes(&b.join("clip.mp4"), &media().path("base.mp4")));
    assert!(same_bytes(&b.join("again.mp4"), &media().path("base.mp4")));
}

/// A `dits-hub worker` that holds its first job and says which.
fn stalled_worker(hub: &HubProcess, lease: &str) -> (Child, i64, String) {
    let mut child = hub
        .admin_command(&["worker", "--lease", lease])
        .env("DITS_HUB_JOB_STALL", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let id = lines
        .map_while(Result::ok)
        .find_map(|l| {
            l.split("dits-hub: job ")
                .nth(1)
                .and_then(|rest| rest.strip_suffix(" stalled"))
                .map(|id| id.parse::<i64>().unwrap())
        })
        .expect("the worker never took a job");
    let name = jobs(hub)
        .iter()
        .find(|j| j["id"] == id)
        .and_then(|j| j["worker"].as_str().map(str::to_string))
        .unwrap();
    (child, id, name)
}

#[test]
fn two_workers_hold_different_jobs_and_a_killed_workers_job_is_taken_over() {
    let env = TestEnv::new();
    // No worker inside the serving hub: the queue is left to the worker processes.
    let (hub, _) = env.alice_hub_on(&env.dir.path().join("hub-data"), &["--workers", "0"], &[]);
    let repo = env.repo("a");
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    // Three pushes, three packs (at least), three scrub jobs.
    for (src, name) in [
        ("base.mp4", "a.mp4"),
        ("noise.mp4", "b.mp4"),
        ("rewrap.mov", "c.mov"),
    ] {
        env.commit_file(&repo, &media().path(src), name);
        env.git(&repo, &["push", "-q", "origin", "main"]);
    }
    hub.admin(&["scrub"]);
    let queued = jobs(&hub);
    assert!(queued.len() >= 3, "{queued:?}");

    let (mut first, first_job, first_name) = stalled_worker(&hub, "3s");
    let (mut second, second_job, second_name) = stalled_worker(&hub, "3s");
    assert_ne!(first_job, second_job, "two workers were handed one job");
    assert_ne!(first_name, second_name);
    second.kill().unwrap();
    second.wait().unwrap();

    // The first worker stays alive (renewing its lease); the second's job is taken over
    // by a worker started after the kill, once the dead worker's lease ran out.
    let mut third = hub
        .admin_command(&["worker", "--lease", "3s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let jobs = jobs(&hub);
        let state = |id: i64| jobs.iter().find(|j| j["id"] == id).unwrap().clone();
        let taken_over = state(second_job);
        if taken_over["state"] == "done" {
            assert_eq!(taken_over["attempts"], 2, "{taken_over}");
            assert_ne!(taken_over["worker"], second_name.as_str());
            // The live worker's job was never taken from it.
            let held = state(first_job);
            assert_eq!(held["state"], "running", "{held}");
            assert_eq!(held["worker"], first_name.as_str());
            assert_eq!(held["attempts"], 1);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{jobs:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    // Its job too, in the end.
    let started = Instant::now();
    while jobs(&hub).iter().any(|j| j["state"] != "done") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{:?}",
            jobs(&hub)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    third.kill().unwrap();
    third.wait().unwrap();
    assert_eq!(fsck(&hub).0, 0);
}

/// `ffprobe`'s view of a file's first video stream: "codec,width,height"; panics naming
/// the file if ffprobe reports any error.
fn probe(file: &std::path::Path) -> String {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Fully decodes `file`: a proxy must play to the end, not just open.
fn decodes_cleanly(file: &std::path::Path) {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn transcodes(hub: &HubProcess) -> Vec<serde_json::Value> {
    jobs(hub)
        .into_iter()
        .filter(|j| j["kind"] == "transcode")
        .collect()
}

/// GET `url` with `token` (none if empty) and `extra` curl arguments into `into`: the
/// status code and the response headers (lowercase).
fn curl(token: &str, url: &str, extra: &[&str], into: &std::path::Path) -> (String, String) {
    let mut command = std::process::Command::new("curl");
    command.args(["-sk", "-D", "-", "-o"]).arg(into);
    command.args(["-w", "%{http_code}"]).args(extra);
    if !token.is_empty() {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let out = command.arg(url).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    let code = text.lines().last().unwrap_or_default().trim().to_string();
    (code, text)
}

#[test]
fn a_pushed_clip_gets_a_poster_strip_and_playable_proxy_made_once_per_asset() {
    let env = TestEnv::new();
    let (hub, token) = env.alice_hub_on(&env.dir.path().join("hub-data"), &["--transcode"], &[]);
    let repo = env.repo("a");
    env.git(&repo, &["dits", "track", "*.mxf"]);
    env.git(&repo, &["add", ".gitattributes"]);
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    env.commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    env.commit_file(&repo, &containers().path("atom.mxf"), "atom.mxf");
    std::fs::write(repo.join("notes.bin"), vec![7u8; 100_000]).unwrap();
    env.git(&repo, &["add", "notes.bin"]);
    env.git(&repo, &["commit", "-q", "-m", "not video"]);
    env.git(&repo, &["push", "-q", "origin", "main"]);

    // Indexing the push queues one transcode per video (the .bin is not one).
    let started = Instant::now();
    while transcodes(&hub).len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{:?}",
            jobs(&hub)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let done = all_done(&hub);
    assert_eq!(done.len(), 2, "{done:?}");

    let out = env.git(
        &repo,
        &[
            "dits", "proxy", "clip.mp4", "atom.mxf", "--into", "proxies", "--json",
        ],
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["fetched"].as_array().unwrap().len(), 2, "{report}");
    let proxies = repo.join("proxies");
    // Smaller than 540 lines stays as it is; 720p comes down to 540.
    assert_eq!(probe(&proxies.join("clip.mp4")), "h264,640,360");
    assert_eq!(probe(&proxies.join("atom.mxf")), "h264,960,540");
    decodes_cleanly(&proxies.join("clip.mp4"));
    decodes_cleanly(&proxies.join("atom.mxf"));
    let proxy_size = std::fs::metadata(proxies.join("clip.mp4")).unwrap().len();
    let original_size = std::fs::metadata(media().path("base.mp4")).unwrap().len();
    assert!(
        proxy_size < original_size,
        "{proxy_size} vs {original_size}"
    );

    env.git(
        &repo,
        &[
            "dits", "proxy", "--kind", "poster", "clip.mp4", "--into", "proxies",
        ],
    );
    env.git(
        &repo,
        &[
            "dits", "proxy", "--kind", "strip", "clip.mp4", "--into", "proxies",
        ],
    );
    assert_eq!(probe(&proxies.join("clip.mp4.poster.jpg")), "mjpeg,320,180");
    assert_eq!(probe(&proxies.join("clip.mp4.strip.jpg")), "mjpeg,3200,180");

    // Not video: no proxy, and the command says why and exits 1.
    let out = env.git_output(&repo, &["dits", "proxy", "notes.bin"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("notes.bin") && err.contains("not video"),
        "{err}"
    );

    // The same proxy over HTTPS, whole and by byte range, as a browser's <video> reads it.
    let recipe = env.recipe_of(&repo, "HEAD:clip.mp4");
    let url = format!(
        "https://127.0.0.1:{}/api/v1/repos/alice/film/derived/{recipe}/proxy",
        hub.port
    );
    let fetched = env.dir.path().join("over-https.mp4");
    let (code, _) = curl(&token, &url, &[], &fetched);
    assert_eq!(code, "200");
    assert!(same_bytes(&fetched, &proxies.join("clip.mp4")));
    let (code, headers) = curl(&token, &url, &["-H", "Range: bytes=100-199"], &fetched);
    assert_eq!(code, "206", "{headers}");
    assert!(
        headers.contains(&format!("content-range: bytes 100-199/{proxy_size}")),
        "{headers}"
    );
    let whole = std::fs::read(proxies.join("clip.mp4")).unwrap();
    assert_eq!(std::fs::read(&fetched).unwrap(), whole[100..200]);
    let (code, _) = curl(
        &token,
        &url,
        &["-H", &format!("Range: bytes={proxy_size}-")],
        &fetched,
    );
    assert_eq!(code, "416");
    let (code, _) = curl("", &url, &[], &fetched);
    assert_eq!(code, "401");
    let stranger = hub.admin(&["user", "add", "stranger"]);
    let (code, _) = curl(&stranger, &url, &[], &fetched);
    assert_eq!(
        code, "404",
        "a non-member cannot tell the repository exists"
    );

    // The same clip at another path: no second transcode, and the same proxy.
    std::fs::create_dir_all(repo.join("other")).unwrap();
    env.commit_file(&repo, &media().path("base.mp4"), "other/same.mp4");
    env.git(&repo, &["push", "-q", "origin", "main"]);
    let head = env.git(&repo, &["rev-parse", "HEAD"]);
    let started = Instant::now();
    while !hub
        .admin(&["repo", "log", "alice/film", "--json"])
        .contains(head.trim())
    {
        assert!(started.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(transcodes(&hub).len(), 2, "{:?}", jobs(&hub));
    assert!(transcodes(&hub).iter().all(|j| j["attempts"] == 1));
    env.git(
        &repo,
        &["dits", "proxy", "other/same.mp4", "--into", "proxies"],
    );
    assert!(same_bytes(
        &proxies.join("other/same.mp4"),
        &proxies.join("clip.mp4")
    ));
    assert_eq!(
        metric(&hub, "dits_jobs{kind=\"transcode\",state=\"done\"}"),
        "dits_jobs{kind=\"transcode\",state=\"done\"} 2"
    );

    // Once no ref reaches the clips, gc forgets what was made of them and deletes it.
    assert!(hub.stored_bytes("derived/") > 0);
    env.git(&repo, &["push", "-q", "-f", "origin", "HEAD~4:main"]);
    let report = hub.admin(&["gc", "--json", "--gc-grace", "0s"]);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(
        report["derived_dropped"], 6,
        "two assets, three each: {report}"
    );
    assert_eq!(hub.stored_bytes("derived/"), 0);
    assert!(transcodes(&hub).is_empty(), "{:?}", jobs(&hub));
}
