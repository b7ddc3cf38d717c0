//! The hub's pages (issue 20, first part), driven over HTTPS with curl's cookie jar as a
//! browser would: sign-in with a token into a session cookie, repositories, history,
//! locks with force-unlock, CSRF refusals, a non-member's 404, sign-out revoking the
//! session. Both passes.

use std::path::PathBuf;
use std::process::Command;

use dits_tests::{media, HubProcess, TestEnv};

/// A cookie jar against one hub.
struct Browser {
    jar: PathBuf,
    port: u16,
}

/// What a page answered: status, body (as sent, and with the HTML escapes undone, as a
/// reader sees it), and the `Location` header if any.
struct Answer {
    code: u16,
    raw: String,
    body: String,
    location: Option<String>,
}

fn unescape(html: &str) -> String {
    html.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

impl Browser {
    fn new(env: &TestEnv, hub: &HubProcess, name: &str) -> Browser {
        Browser {
            jar: env.dir.path().join(format!("{name}.cookies")),
            port: hub.port,
        }
    }

    fn request(&self, path: &str, extra: &[&str]) -> Answer {
        let out = Command::new("curl")
            .args(["-sk", "-D", "-", "-b"])
            .arg(&self.jar)
            .arg("-c")
            .arg(&self.jar)
            .args(extra)
            .arg(format!("https://127.0.0.1:{}{path}", self.port))
            .output()
            .expect("running curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let location = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("location")
                .then(|| v.trim().to_string())
        });
        Answer {
            code,
            raw: body.to_string(),
            body: unescape(body),
            location,
        }
    }

    fn get(&self, path: &str) -> Answer {
        self.request(path, &[])
    }

    fn post(&self, path: &str, form: &[(&str, &str)]) -> Answer {
        let mut args = vec!["-X".to_string(), "POST".to_string()];
        for (k, v) in form {
            args.push("--data-urlencode".into());
            args.push(format!("{k}={v}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.request(path, &args)
    }

    /// Signs in with `token`; returns the session cookie's value.
    fn sign_in(&self, token: &str) -> String {
        let form = self.get("/ui/login");
        assert_eq!(form.code, 200, "{}", form.body);
        let csrf = csrf_in(&form.body);
        let signed = self.post("/ui/login", &[("token", token), ("csrf", &csrf)]);
        assert_eq!(signed.code, 303, "{}", signed.body);
        assert_eq!(signed.location.as_deref(), Some("/ui/repos"));
        let jar = std::fs::read_to_string(&self.jar).unwrap();
        let line = jar
            .lines()
            .find(|l| l.contains("dits_session"))
            .expect("a session cookie");
        assert!(line.starts_with("#HttpOnly_"), "HTTP-only: {line}");
        assert!(line.split('\t').nth(3) == Some("TRUE"), "Secure: {line}");
        line.rsplit('\t').next().unwrap().to_string()
    }
}

/// The CSRF value of the first form in `html`.
fn csrf_in(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF field")
        + 19;
    html[at..].split('"').next().unwrap().to_string()
}

/// The answer of alice/film's lock API to the user of `token`, with `extra` curl
/// arguments (none: the list).
fn locks_api(hub: &HubProcess, token: &str, extra: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sk", "-H", &format!("Authorization: Bearer {token}")])
        .args(extra)
        .arg(format!(
            "https://127.0.0.1:{}/api/v1/repos/alice/film/locks",
            hub.port
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Locks `path` in alice/film as the user of `token`; the answer.
pub(crate) fn lock_as(hub: &HubProcess, token: &str, path: &str) -> String {
    let body = format!(r#"{{"path":"{path}"}}"#);
    locks_api(hub, token, &["-X", "POST", "-d", &body])
}

fn locks_json(hub: &HubProcess, token: &str) -> String {
    locks_api(hub, token, &[])
}

#[test]
fn pages_sign_in_show_history_and_locks_and_refuse_forged_forms_and_strangers() {
    let env = TestEnv::new();
    let (hub, alice) = env.alice_hub();
    let repo = env.repo("a");
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    std::fs::copy(media().path("base.mp4"), repo.join("clip.mp4")).unwrap();
    env.git(&repo, &["add", "clip.mp4"]);
    env.git(
        &repo,
        &["commit", "-q", "-m", "First take <b>director's cut</b>"],
    );
    env.git(&repo, &["push", "-q", "origin", "main"]);
    let bob = hub.admin(&["user", "add", "bob"]);
    hub.admin(&["repo", "member", "alice/film", "bob", "--role", "write"]);
    let lock = lock_as(&hub, &bob, "clip.mp4");
    assert!(lock.contains("clip.mp4"), "{lock}");

    let browser = Browser::new(&env, &hub, "alice");
    // Signed out: every page leads to the sign-in form.
    let answer = browser.get("/ui/repos");
    assert_eq!(
        (answer.code, answer.location.as_deref()),
        (303, Some("/ui/login"))
    );
    // A sign-in form from elsewhere (no matching CSRF cookie) and a wrong token fail.
    browser.get("/ui/login");
    let refused = browser.post("/ui/login", &[("token", &alice), ("csrf", "forged")]);
    assert_eq!(refused.code, 403);
    // Each form shown carries a new value (and cookie).
    let form = browser.get("/ui/login");
    let wrong = browser.post(
        "/ui/login",
        &[("token", "dits_nope"), ("csrf", &csrf_in(&form.body))],
    );
    assert_eq!(wrong.code, 401);
    assert!(wrong.body.contains("does not know this token"));

    let session = browser.sign_in(&alice);
    assert_ne!(
        session, alice,
        "the browser holds a session token of its own"
    );
    let repos = browser.get("/ui/repos");
    assert_eq!(repos.code, 200);
    assert!(repos.body.contains("/ui/r/alice/film"), "{}", repos.body);
    let history = browser.get("/ui/r/alice/film");
    assert_eq!(history.code, 200);
    assert!(
        history.body.contains("First take <b>director's cut</b>"),
        "{}",
        history.body
    );
    assert!(
        !history.raw.contains("<b>director"),
        "what users wrote is escaped"
    );
    assert!(history.body.contains("clip.mp4"));
    assert!(history.body.contains("refs/heads/main"));

    let locks = browser.get("/ui/r/alice/film/locks");
    assert_eq!(locks.code, 200);
    assert!(locks.body.contains("Force unlock") && locks.body.contains("bob"));
    let id_at = locks.body.find("/locks/").unwrap() + 7;
    let id: String = locks.body[id_at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let unlock = format!("/ui/r/alice/film/locks/{id}/unlock");
    // A form without this session's CSRF value changes nothing.
    let forged = browser.post(&unlock, &[("csrf", "0123456789abcdef0123456789abcdef")]);
    assert_eq!(forged.code, 403);
    assert!(locks_json(&hub, &alice).contains("clip.mp4"));
    let forced = browser.post(&unlock, &[("csrf", &csrf_in(&locks.body))]);
    assert_eq!(forced.code, 200, "{}", forced.body);
    assert!(forced.body.contains("unlocked by alice"), "{}", forced.body);
    assert!(!locks_json(&hub, &alice).contains("clip.mp4"));

    let storage = browser.get("/ui/r/alice/film/storage");
    assert_eq!(storage.code, 200);
    assert!(storage.body.contains("Deduplication"), "{}", storage.body);

    // Every page of a repository answers the same as the API does: signed out, to the
    // sign-in form; a non-member, 404; a read-only member, no unlocking.
    let pages = [
        "/ui/r/alice/film".to_string(),
        "/ui/r/alice/film/locks".to_string(),
        "/ui/r/alice/film/storage".to_string(),
        format!(
            "/ui/r/alice/film/asset/{}",
            env.recipe_of(&repo, "HEAD:clip.mp4")
        ),
        format!(
            "/ui/r/alice/film/derived/{}/poster",
            env.recipe_of(&repo, "HEAD:clip.mp4")
        ),
    ];
    let nobody = Browser::new(&env, &hub, "nobody");
    for path in &pages {
        let answer = nobody.get(path);
        assert_eq!(
            (answer.code, answer.location.as_deref()),
            (303, Some("/ui/login")),
            "{path}"
        );
    }
    let reader = hub.admin(&["user", "add", "reader"]);
    hub.admin(&["repo", "member", "alice/film", "reader", "--role", "read"]);
    let reading = Browser::new(&env, &hub, "reader");
    reading.sign_in(&reader);
    assert_eq!(reading.get(&pages[2]).code, 200);
    let relock = lock_as(&hub, &bob, "clip.mp4");
    let id_at = relock.find("\"id\":\"").unwrap() + 6;
    let id: String = relock[id_at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let page = reading.get("/ui/r/alice/film/locks");
    assert!(
        !page.body.contains("Force unlock"),
        "a reader is offered no unlock"
    );
    let tried = reading.post(
        &format!("/ui/r/alice/film/locks/{id}/unlock"),
        &[("csrf", &csrf_in(&page.body))],
    );
    assert_eq!(tried.code, 403, "{}", tried.body);
    assert!(locks_json(&hub, &alice).contains("clip.mp4"));

    // A user who is not a member gets a 404 page, as on the API.
    let stranger = hub.admin(&["user", "add", "stranger"]);
    let other = Browser::new(&env, &hub, "stranger");
    other.sign_in(&stranger);
    for path in &pages {
        let hidden = other.get(path);
        assert_eq!(hidden.code, 404, "{path}");
        assert!(hidden.body.contains("Not found"), "{path}");
    }
    assert!(!other.get("/ui/repos").body.contains("alice/film"));
    // The forms too: signed out, to sign-in; a non-member's unlock, 404; nothing changes.
    let unlock = format!("/ui/r/alice/film/locks/{id}/unlock");
    let signed_out = nobody.post(&unlock, &[("csrf", "x")]);
    assert_eq!(
        (signed_out.code, signed_out.location.as_deref()),
        (303, Some("/ui/login"))
    );
    let out = nobody.post("/ui/logout", &[("csrf", "x")]);
    assert_eq!(
        (out.code, out.location.as_deref()),
        (303, Some("/ui/login"))
    );
    let page = other.get("/ui/repos");
    let hidden = other.post(&unlock, &[("csrf", &csrf_in(&page.body))]);
    assert_eq!(hidden.code, 404, "{}", hidden.body);
    assert!(locks_json(&hub, &alice).contains("clip.mp4"));

    // Signing out revokes the session's token: the old cookie no longer works.
    let page = browser.get("/ui/repos");
    let out = browser.post("/ui/logout", &[("csrf", &csrf_in(&page.body))]);
    assert_eq!(
        (out.code, out.location.as_deref()),
        (303, Some("/ui/login"))
    );
    let replayed = browser.request(
        "/ui/repos",
        &["-H", &format!("Cookie: dits_session={session}")],
    );
    assert_eq!(replayed.code, 303, "a revoked session is signed out");
}

#[test]
fn in_chromium_the_asset_page_shows_the_poster_and_plays_the_proxy() {
    let env = TestEnv::new();
    let data = env.dir.path().join("hub-data");
    let (hub, alice) = env.alice_hub_on(&data, &["--transcode"], &[]);
    let repo = env.repo("a");
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    env.commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    env.git(&repo, &["push", "-q", "origin", "main"]);
    let recipe = env.recipe_of(&repo, "HEAD:clip.mp4").to_hex();
    let bob = hub.admin(&["user", "add", "bob"]);
    hub.admin(&["repo", "member", "alice/film", "bob", "--role", "write"]);
    lock_as(&hub, &bob, "clip.mp4");
    // The proxy and poster are made by the hub's worker after the push.
    let started = std::time::Instant::now();
    while !hub
        .admin(&["jobs", "--state", "done"])
        .contains("transcode")
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "{}",
            hub.admin(&["jobs"])
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let modules = root.join("target/browser/node_modules");
    assert!(
        modules.join("playwright-core").exists(),
        "playwright-core is missing: run scripts/test-deps.sh"
    );
    // Kept after the run: the pages as a browser drew them.
    let shots = root.join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("node")
        .arg(root.join("tests/browser/pages.mjs"))
        .arg(&modules)
        .arg(format!("https://127.0.0.1:{}", hub.port))
        .args([alice.as_str(), "alice/film", recipe.as_str()])
        .arg(&shots)
        .output()
        .expect("running node");
    assert!(
        out.status.success(),
        "the browser run failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert!(
        seen["history"].as_str().unwrap().contains("clip.mp4"),
        "{seen}"
    );
    assert!(seen["posterWidth"].as_u64().unwrap() > 0, "{seen}");
    assert!(seen["readyState"].as_u64().unwrap() >= 2, "{seen}");
    let expected = dits_tests::duration_secs(&media().path("base.mp4"));
    let played = seen["duration"].as_f64().unwrap();
    assert!(
        (played - expected).abs() < 0.5,
        "the proxy lasts {played} s, the clip {expected} s"
    );
    assert!(
        seen["unlocked"]
            .as_str()
            .unwrap()
            .contains("unlocked by alice"),
        "{seen}"
    );
    assert!(seen["phoneOverflow"].as_i64().unwrap() <= 0, "{seen}");
    assert!(
        seen["tree"].as_str().unwrap().contains("clip.mp4"),
        "{seen}"
    );
    for shot in [
        "repos",
        "history",
        "asset",
        "locks",
        "tree",
        "history-phone",
    ] {
        assert!(shots.join(format!("{shot}.png")).exists());
    }
}

/// Polls `path` until its page contains `text` (the hub indexes a push after answering it).
fn wait_for_page(browser: &Browser, path: &str, text: &str) -> Answer {
    let started = std::time::Instant::now();
    loop {
        let answer = browser.get(path);
        if answer.body.contains(text) {
            return answer;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "{path} never showed {text:?}: {}",
            answer.body
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn pages_page_through_history_browse_trees_and_projects_and_download_originals() {
    let env = TestEnv::new();
    let (hub, alice) = env.alice_hub();
    let repo = env.repo("a");
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    std::fs::create_dir_all(repo.join("shots")).unwrap();
    std::fs::copy(media().path("base.mp4"), repo.join("shots/take 1#a.mp4")).unwrap();
    dits_tests::melt(&repo, &["shots/take 1#a.mp4"], "edit.mlt");
    env.git(&repo, &["add", "."]);
    env.git(&repo, &["commit", "-q", "-m", "first take and edit"]);
    // The same picture and sound with other metadata: nearly every byte is shared.
    std::fs::copy(
        media().path("metadata.mp4"),
        repo.join("shots/take 1#a.mp4"),
    )
    .unwrap();
    env.git(&repo, &["commit", "-qam", "retitled"]);
    for i in 0..60 {
        env.git(
            &repo,
            &["commit", "-q", "--allow-empty", "-m", &format!("note {i}")],
        );
    }
    env.git(&repo, &["push", "-q", "origin", "main"]);
    let first = env.recipe_of(&repo, "HEAD~61:shots/take 1#a.mp4").to_hex();
    let second = env.recipe_of(&repo, "HEAD:shots/take 1#a.mp4").to_hex();
    let browser = Browser::new(&env, &hub, "alice");
    browser.sign_in(&alice);

    // History in pages of 50: the newest page offers older commits, the second the rest.
    let newest = wait_for_page(&browser, "/ui/r/alice/film", "note 59");
    assert!(newest.body.contains("Older commits") && !newest.body.contains("Newer commits"));
    assert!(
        !newest.body.contains("retitled"),
        "62 commits are two pages"
    );
    let older = wait_for_page(
        &browser,
        "/ui/r/alice/film?page=2",
        "% shared with the previous version",
    );
    assert!(older.body.contains("retitled") && older.body.contains("first take and edit"));
    assert!(older.body.contains("Newer commits") && !older.body.contains("Older commits"));
    assert!(older.body.contains("new file"), "{}", older.body);
    let share: u32 = {
        let at = older.body.find("% shared").unwrap();
        older.body[..at]
            .rsplit(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(share >= 90, "metadata changed only: {share}% shared");
    assert!(
        older.body.contains("/ui/r/alice/film/project/"),
        "the edit is listed as a project"
    );
    assert_eq!(browser.get("/ui/r/alice/film?page=9").code, 200);

    // The tree at a branch and at a commit, into a directory, and a media file's path
    // leads to its asset page.
    let root = browser.get("/ui/r/alice/film/tree/main");
    assert_eq!(root.code, 200, "{}", root.body);
    assert!(root.body.contains("href=\"/ui/r/alice/film/tree/") && root.body.contains("shots"));
    assert!(root.body.contains("edit.mlt") && root.body.contains("/project/"));
    let shots = browser.get("/ui/r/alice/film/tree/main/shots");
    assert_eq!(shots.code, 200);
    assert!(
        shots.body.contains(&format!("/asset/{second}")),
        "{}",
        shots.body
    );
    let old_tree = browser.get(&format!(
        "/ui/r/alice/film/tree/{}/shots",
        env.git(&repo, &["rev-parse", "HEAD~61"]).trim()
    ));
    assert!(
        old_tree.body.contains(&format!("/asset/{first}")),
        "{}",
        old_tree.body
    );
    let file = browser.get("/ui/r/alice/film/tree/main/shots/take%201%23a.mp4");
    assert_eq!(
        (file.code, file.location),
        (303, Some(format!("/ui/r/alice/film/asset/{second}")))
    );
    assert_eq!(
        browser.get("/ui/r/alice/film/tree/main/nothing-here").code,
        404
    );
    assert_eq!(
        browser.get("/ui/r/alice/film/tree/no-such-branch").code,
        404
    );

    // The project page lists what the edit references, resolved in the hub's mirror.
    let project = browser.get("/ui/r/alice/film/project/main/edit.mlt");
    assert_eq!(project.code, 200, "{}", project.body);
    assert!(project.body.contains("shots/take 1#a.mp4") && project.body.contains("tracked"));
    assert!(project.body.contains("all tracked"), "{}", project.body);

    // The asset page: what the pointer and recipe say, and the share of the previous version.
    let asset = browser.get(&format!("/ui/r/alice/film/asset/{second}"));
    assert_eq!(asset.code, 200);
    for text in [
        "mp4",
        "video: avc1 640x360",
        "audio: mp4a",
        "8.00s",
        "objects",
        "starting at a keyframe",
    ] {
        assert!(asset.body.contains(text), "{text}: {}", asset.body);
    }
    assert!(
        asset.body.contains(&format!("/asset/{first}\"")),
        "links the previous version"
    );

    // The original, rebuilt as it is sent: whole, and one byte range.
    let original = std::fs::read(media().path("metadata.mp4")).unwrap();
    let saved = env.dir.path().join("download.mp4");
    let download = format!("/ui/r/alice/film/asset/{second}/download");
    let got = browser.request(&download, &["-o", saved.to_str().unwrap()]);
    assert_eq!(got.code, 200);
    assert!(
        std::fs::read(&saved).unwrap() == original,
        "the download equals the file"
    );
    let ranged = browser.request(
        &download,
        &[
            "-H",
            "Range: bytes=1000-1999",
            "-o",
            saved.to_str().unwrap(),
        ],
    );
    assert_eq!(ranged.code, 206);
    assert_eq!(std::fs::read(&saved).unwrap(), original[1000..2000]);
    let past = browser.request(
        &download,
        &["-H", &format!("Range: bytes={}-", original.len())],
    );
    assert_eq!(past.code, 416);

    // The same rules as every page: signed out, to sign-in; a non-member, 404.
    let pages = [
        "/ui/r/alice/film?page=2".to_string(),
        "/ui/r/alice/film/tree/main".to_string(),
        "/ui/r/alice/film/tree/main/shots".to_string(),
        "/ui/r/alice/film/project/main/edit.mlt".to_string(),
        download.clone(),
    ];
    let nobody = Browser::new(&env, &hub, "nobody");
    let stranger = hub.admin(&["user", "add", "stranger"]);
    let other = Browser::new(&env, &hub, "stranger");
    other.sign_in(&stranger);
    for path in &pages {
        let answer = nobody.get(path);
        assert_eq!(
            (answer.code, answer.location.as_deref()),
            (303, Some("/ui/login")),
            "{path}"
        );
        assert_eq!(other.get(path).code, 404, "{path}");
    }
}

#[test]
fn a_browser_session_ends_on_the_hub_when_it_expires() {
    let env = TestEnv::new();
    let (hub, alice) = env.alice_hub_on(
        &env.dir.path().join("hub-data"),
        &["--session-ttl", "2s"],
        &[],
    );
    let browser = Browser::new(&env, &hub, "alice");
    let session = browser.sign_in(&alice);
    assert_eq!(browser.get("/ui/repos").code, 200);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    // The cookie is still sent as it was: the hub itself refuses the token.
    let late = browser.request(
        "/ui/repos",
        &["-H", &format!("Cookie: dits_session={session}")],
    );
    assert_eq!(
        (late.code, late.location.as_deref()),
        (303, Some("/ui/login"))
    );
    // The user's own token is untouched.
    assert_eq!(browser.get("/ui/login").code, 200);
    browser.sign_in(&alice);
    assert_eq!(browser.get("/ui/repos").code, 200);
}
