//! The dashboard over real TLS on loopback, as a browser and an API client use it, on
//! SQLite and (when configured) PostgreSQL: logins, roles and scopes, CSRF, entries,
//! escaping, exports and logout.

mod common;

use std::sync::Arc;

use chrono::Utc;
use common::{Running, unit};
use kaohe_collector::web::auth::{Role, argon2_hash};

const PASSWORD: &str = "correct horse battery";

/// A collector with a small province: two cities, three county bureaus (one with a
/// hostile name), and one user of each role.
async fn start(test: &str, database_url: String) -> Running {
    let r = common::collector(&format!("web-{test}"), database_url, |_| {}).await;
    let store = &r.store;
    for u in [
        unit("nx", "宁夏回族自治区司法厅", None, "province"),
        unit("nx/yc", "银川市司法局", Some("nx"), "city"),
        unit("nx/yc/a", "兴庆区司法局", Some("nx/yc"), "county"),
        unit("nx/yc/b", "金凤区司法局", Some("nx/yc"), "county"),
        unit("nx/wz", "吴忠市司法局", Some("nx"), "city"),
        unit("nx/wz/c", "<script>alert(1)</script>", Some("nx/wz"), "county"),
    ] {
        store.add_unit(&u).await.expect("unit");
    }
    let hash = argon2_hash(PASSWORD).expect("hash");
    for (name, role, unit, display) in [
        ("admin", Role::Province, None, "省厅管理员"),
        ("city", Role::City, Some("nx/yc"), "银川市管理员"),
        ("staff", Role::Unit, Some("nx/yc/a"), "兴庆区工作人员"),
        ("reviewer", Role::Reviewer, None, "李评审"),
        ("locked", Role::Province, None, "被锁定"),
    ] {
        store
            .add_user(name, &hash, role, unit, Some(display), Utc::now())
            .await
            .expect("user");
    }
    r
}

/// A client that keeps the session cookie by hand and never follows redirects.
struct Browser {
    client: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

struct Page {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn form_encode(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Browser {
    fn new(base: &str, ca_pem: &[u8]) -> Browser {
        Browser::from_source(base, ca_pem, std::net::IpAddr::from([127, 0, 0, 1]))
    }

    /// A browser on another address of the loopback network (another office PC).
    fn from_source(base: &str, ca_pem: &[u8], source: std::net::IpAddr) -> Browser {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca_pem).expect("ca pem"))
            .expect("root");
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .local_address(source)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Browser {
            client,
            base: base.to_string(),
            cookie: None,
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Page {
        let req = match &self.cookie {
            Some(c) => req.header("cookie", c.as_str()),
            None => req,
        };
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        Page { status, headers, body }
    }

    async fn get(&self, path: &str) -> Page {
        self.send(self.client.get(format!("{}{path}", self.base))).await
    }

    async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.send(
            self.client
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form_encode(fields)),
        )
        .await
    }

    async fn post_json(&self, path: &str, csrf: Option<&str>, body: &serde_json::Value) -> Page {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = csrf {
            req = req.header("x-csrf-token", t);
        }
        self.send(req).await
    }

    /// Logs in; returns the page the login answered with.
    async fn login(&mut self, user: &str, password: &str) -> Page {
        let page = self
            .post_form("/login", &[("user", user), ("password", password)])
            .await;
        if let Some(c) = session_cookie(&page) {
            self.cookie = Some(c);
        }
        page
    }

    /// The session's CSRF token, from the API.
    async fn csrf(&self) -> String {
        let me = self.get("/api/v1/dashboard/me").await;
        assert_eq!(me.status, 200, "{}", me.body);
        me.json()["csrf_token"].as_str().expect("csrf").to_string()
    }
}

/// `__Host-kaohe_session=…` from a response's Set-Cookie, checking its attributes.
fn session_cookie(page: &Page) -> Option<String> {
    let set = page
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("__Host-kaohe_session=") && !v.starts_with("__Host-kaohe_session=;"))?;
    assert!(
        set.contains("HttpOnly") && set.contains("Secure") && set.contains("SameSite=Strict"),
        "session cookie attributes: {set}"
    );
    Some(set.split(';').next().unwrap_or("").to_string())
}

async fn logged_in(r: &Running, user: &str) -> Browser {
    let mut b = Browser::new(&r.url, &r.ca_pem);
    let page = b.login(user, PASSWORD).await;
    assert_eq!(page.status, 303, "{user} logs in: {}", page.body);
    assert!(b.cookie.is_some(), "{user} got a session cookie");
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_refuse_wrong_passwords_lock_after_five_failures_and_logout_ends_the_session() {
    for (backend, db) in common::database_urls("web_login").await {
        let r = start(&format!("login-{backend}"), db).await;
        let mut b = Browser::new(&r.url, &r.ca_pem);

        // Not logged in: pages go to the login page, the API says 401.
        let p = b.get("/overview").await;
        assert_eq!((p.status, p.location()), (303, "/login"), "{backend}");
        let p = b.get("/").await;
        assert_eq!((p.status, p.location()), (303, "/login"), "{backend}");
        let p = b.get("/api/v1/dashboard/ranking").await;
        assert_eq!(p.status, 401, "{backend}");
        assert!(
            p.json()["error"].as_str().is_some_and(|e| e.contains("登录")),
            "{}",
            p.body
        );

        // A wrong password and an unknown user look the same: 401, no session.
        for (user, pw) in [("admin", "wrong password"), ("nobody", PASSWORD)] {
            let p = b.login(user, pw).await;
            assert_eq!(p.status, 401, "{backend}: {user}");
            assert!(p.body.contains("用户名或密码错误"), "{backend}: {}", p.body);
            assert!(session_cookie(&p).is_none(), "{backend}: no session for a failed login");
        }
        assert!(b.cookie.is_none());

        // Five failures in a row from one address, then that address backs off: even the
        // right password is refused, for a second at first, doubling with each failure.
        for i in 1..=5 {
            let p = b.login("locked", "guess").await;
            assert_eq!(p.status, 401, "{backend}: failure {i}");
        }
        let p = b.login("locked", PASSWORD).await;
        assert_eq!(p.status, 429, "{backend}: the 6th attempt is refused");
        assert!(p.body.contains("登录尝试过多"), "{}", p.body);
        assert_eq!(p.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
        assert!(session_cookie(&p).is_none());
        // The real user at another PC is not locked out by the attacker's failures…
        let mut elsewhere = Browser::from_source(&r.url, &r.ca_pem, std::net::IpAddr::from([127, 0, 0, 2]));
        let p = elsewhere.login("locked", PASSWORD).await;
        assert_eq!(p.status, 303, "{backend}: the same name from another address logs in");
        // …nor for long at the same one: after the back-off the right password works.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let p = b.login("locked", PASSWORD).await;
        assert_eq!(p.status, 303, "{backend}: after the back-off: {}", p.body);
        b.cookie = None;
        // Another user is not affected.
        let mut admin = logged_in(&r, "admin").await;
        let p = admin.get("/overview").await;
        assert_eq!(p.status, 200, "{backend}");

        // Logout needs the CSRF token, then ends the session for good.
        let p = admin.post_form("/logout", &[]).await;
        assert_eq!(p.status, 403, "{backend}: logout without the CSRF token");
        let csrf = admin.csrf().await;
        let p = admin.post_form("/logout", &[("csrf", &csrf)]).await;
        assert_eq!((p.status, p.location()), (303, "/login"), "{backend}");
        let p = admin.get("/overview").await;
        assert_eq!(
            (p.status, p.location()),
            (303, "/login"),
            "{backend}: the old cookie no longer works"
        );
        let p = admin.get("/api/v1/dashboard/me").await;
        assert_eq!(p.status, 401, "{backend}");
        // Logging in again works.
        let p = admin.login("admin", PASSWORD).await;
        assert_eq!(p.status, 303);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_sees_only_its_scope_and_a_unit_outside_it_is_403() {
    for (backend, db) in common::database_urls("web_scope").await {
        let r = start(&format!("scope-{backend}"), db).await;

        // Unit staff of A: its own page and exports, nothing of B.
        let staff = logged_in(&r, "staff").await;
        let p = staff.get("/overview").await;
        assert_eq!(p.status, 303, "{backend}: unit staff go to their unit");
        assert!(p.location().starts_with("/units/nx/yc/a"), "{}", p.location());
        let own = staff.get("/units/nx/yc/a").await;
        assert_eq!(own.status, 200, "{backend}: {}", own.body);
        assert!(own.body.contains("兴庆区司法局"));
        assert!(!own.body.contains("name=\"kind\""), "unit staff get no entry form");
        for path in [
            "/units/nx/yc/b",
            "/units/nx/yc/b/export.csv",
            "/units/nx/yc/b/export.xlsx",
            "/units/nx/yc/b/report.html",
            "/api/v1/dashboard/units/nx/yc/b/sheet",
            "/api/v1/dashboard/units/nx/yc/b/view",
            "/units/nx/nonexistent",
        ] {
            let p = staff.get(path).await;
            assert_eq!(p.status, 403, "{backend}: {path}");
            assert!(p.body.contains("无权"), "{backend}: {path}: {}", p.body);
        }
        let p = staff.get("/api/v1/dashboard/units/nx/yc/b/sheet").await;
        assert!(p.json()["error"].is_string());
        let csv = staff.get("/units/nx/yc/a/export.csv?period=2026").await;
        assert_eq!(csv.status, 200, "{backend}: {}", csv.body);
        let disposition = csv
            .headers
            .get("content-disposition")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            disposition.starts_with("attachment") && disposition.contains("filename*=UTF-8''"),
            "{disposition}"
        );
        assert!(csv.body.contains("四.1"), "the CSV lists the items");
        let sheet = staff.get("/api/v1/dashboard/units/nx/yc/a/sheet?period=2026").await;
        assert_eq!(sheet.status, 200, "{backend}: {}", sheet.body);
        assert_eq!(sheet.json()["total_max"], 100);
        let p = staff.get("/audit").await;
        assert_eq!(p.status, 403, "{backend}: the audit log is the province's");

        // The city administrator: its subtree only.
        let city = logged_in(&r, "city").await;
        let ranking = city.get("/api/v1/dashboard/ranking?period=2026").await;
        assert_eq!(ranking.status, 200, "{backend}: {}", ranking.body);
        let mut ids: Vec<String> = ranking.json()["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r["unit"]["id"].as_str().unwrap_or("").to_string())
            .collect();
        ids.sort();
        assert_eq!(ids, ["nx/yc", "nx/yc/a", "nx/yc/b"], "{backend}");
        let overview = city.get("/overview").await;
        assert_eq!(overview.status, 200);
        assert!(overview.body.contains("金凤区司法局") && !overview.body.contains("吴忠市司法局"));
        assert_eq!(city.get("/units/nx/yc/b").await.status, 200, "{backend}");
        assert_eq!(city.get("/units/nx/wz/c").await.status, 403, "{backend}");
        assert_eq!(city.get("/api/v1/dashboard/units/nx/wz/c/sheet").await.status, 403);

        // The province sees everything; a unit that does not exist is 404 there.
        let admin = logged_in(&r, "admin").await;
        assert_eq!(admin.get("/units/nx/wz/c").await.status, 200, "{backend}");
        assert_eq!(admin.get("/units/nx/none").await.status, 404, "{backend}");
        let units = admin.get("/api/v1/dashboard/units").await;
        assert_eq!(units.json().as_array().map(Vec::len), Some(6));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_are_entered_with_csrf_by_the_right_roles_and_reach_sheet_ranking_and_audit_log() {
    for (backend, db) in common::database_urls("web_entries").await {
        let r = start(&format!("entries-{backend}"), db).await;
        let reviewer = logged_in(&r, "reviewer").await;
        let periods = vec!["2026".to_string()];

        // A POST without the CSRF token stores nothing.
        let review = [
            ("item", "四.1"),
            ("kind", "review"),
            ("score", "2"),
            ("reviewer", "李评审"),
            ("note", "制度齐全"),
            ("period", "2026"),
        ];
        let p = reviewer.post_form("/units/nx/yc/b/entries", &review).await;
        assert_eq!(p.status, 403, "{backend}: {}", p.body);
        assert!(p.body.contains("安全校验失败"), "{}", p.body);
        let mut wrong = review.to_vec();
        wrong.push(("csrf", "forged"));
        assert_eq!(reviewer.post_form("/units/nx/yc/b/entries", &wrong).await.status, 403);
        let p = reviewer
            .post_json(
                "/api/v1/dashboard/units/nx/yc/b/entries",
                None,
                &serde_json::json!({"item": "四.1", "kind": "review", "score": 2, "reviewer": "x", "note": "y"}),
            )
            .await;
        assert_eq!(p.status, 403, "{backend}: API without X-CSRF-Token");
        assert!(r.store.entries("nx/yc/b", &periods).await.expect("entries").is_empty());

        // With it, the review is stored and shows on the sheet with the reviewer's name.
        let csrf = reviewer.csrf().await;
        let mut with = review.to_vec();
        with.push(("csrf", &csrf));
        let p = reviewer.post_form("/units/nx/yc/b/entries", &with).await;
        assert_eq!(p.status, 303, "{backend}: {}", p.body);
        let page = reviewer.get("/units/nx/yc/b?period=2026").await;
        assert!(
            page.body.contains("李评审") && page.body.contains("制度齐全"),
            "{backend}"
        );
        let sheet = reviewer
            .get("/api/v1/dashboard/units/nx/yc/b/sheet?period=2026")
            .await
            .json();
        let item = sheet["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|i| i["id"] == "四.1")
            .expect("四.1")
            .clone();
        assert_eq!(item["review_score"], 2.0, "{item}");
        assert_eq!(item["entries"][0]["reviewer"], "李评审");

        // The reviewed unit now ranks first on the overview.
        let admin = logged_in(&r, "admin").await;
        let overview = admin.get("/overview?period=2026").await;
        assert_eq!(overview.status, 200);
        let b = overview.body.find("金凤区司法局").expect("B listed");
        let a = overview.body.find("兴庆区司法局").expect("A listed");
        assert!(b < a, "{backend}: the unit with a review ranks above");
        assert!(overview.body.contains("排名") && overview.body.contains("自动合计"));

        // The audit log has it, under the reviewer's login.
        let log = admin.get("/api/v1/dashboard/audit").await.json();
        let line = log
            .as_array()
            .expect("log")
            .iter()
            .find(|l| l["action"] == "entry.review")
            .expect("audit line")
            .clone();
        assert_eq!(line["actor"], "reviewer");
        assert_eq!(line["unit_id"], "nx/yc/b");
        let audit_page = admin.get("/audit").await;
        assert!(audit_page.status == 200 && audit_page.body.contains("entry.review"));

        // A reviewer may not override; unit staff may not enter anything.
        let p = reviewer
            .post_json(
                "/api/v1/dashboard/units/nx/yc/b/entries",
                Some(&csrf),
                &serde_json::json!({"item": "三.2", "kind": "override", "score": 5, "reviewer": "李评审",
                    "note": "停电", "expires": "2099-01-01", "period": "2026"}),
            )
            .await;
        assert_eq!(p.status, 403, "{backend}: {}", p.body);
        let staff = logged_in(&r, "staff").await;
        let staff_csrf = staff.csrf().await;
        let p = staff
            .post_json(
                "/api/v1/dashboard/units/nx/yc/a/entries",
                Some(&staff_csrf),
                &serde_json::json!({"item": "四.1", "kind": "review", "score": 1, "reviewer": "x", "note": "y"}),
            )
            .await;
        assert_eq!(p.status, 403, "{backend}: unit staff are read-only");

        // An override without an expiry: 400 with the Chinese message, on the page and in JSON.
        let admin_csrf = admin.csrf().await;
        let p = admin
            .post_form(
                "/units/nx/yc/a/entries",
                &[
                    ("csrf", &admin_csrf),
                    ("item", "三.2"),
                    ("kind", "override"),
                    ("score", "5"),
                    ("reviewer", "省厅"),
                    ("note", "外部停电"),
                    ("period", "2026"),
                ],
            )
            .await;
        assert_eq!(p.status, 400, "{backend}");
        assert!(p.body.contains("人工改分和豁免必须设定到期日"), "{}", p.body);
        let p = admin
            .post_json(
                "/api/v1/dashboard/units/nx/yc/a/entries",
                Some(&admin_csrf),
                &serde_json::json!({"item": "三.2", "kind": "override", "score": 5, "reviewer": "省厅", "note": "外部停电"}),
            )
            .await;
        assert_eq!(p.status, 400);
        assert!(p.json()["error"].as_str().is_some_and(|e| e.contains("到期日")));
        assert!(r.store.entries("nx/yc/a", &periods).await.expect("entries").is_empty());

        // With an expiry the province's override is kept beside the automatic score.
        let p = admin
            .post_json(
                "/api/v1/dashboard/units/nx/yc/a/entries",
                Some(&admin_csrf),
                &serde_json::json!({"item": "三.2", "kind": "override", "score": 5, "reviewer": "省厅",
                    "note": "外部停电", "expires": "2099-12-31", "period": "2026"}),
            )
            .await;
        assert_eq!(p.status, 201, "{backend}: {}", p.body);
        let id = p.json()["id"].as_str().expect("id").to_string();
        let page = admin.get("/units/nx/yc/a?period=2026").await;
        assert!(
            page.body.contains("人工改分") && page.body.contains("自动评分"),
            "{backend}"
        );
        // Withdrawn through the page's form.
        let p = admin
            .post_form(
                "/units/nx/yc/a/entries/withdraw",
                &[("csrf", &admin_csrf), ("id", &id), ("period", "2026")],
            )
            .await;
        assert_eq!(p.status, 303, "{backend}: {}", p.body);
        assert!(r.store.entries("nx/yc/a", &periods).await.expect("entries").is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_escape_data_and_draw_the_uptime_chart_and_network_map() {
    let (backend, db) = common::database_urls("web_pages").await.remove(0);
    let r = start(&format!("pages-{backend}"), db).await;
    let admin = logged_in(&r, "admin").await;
    let overview = admin.get("/overview").await;
    assert_eq!(overview.status, 200);
    assert!(overview.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!overview.body.contains("<script>alert"), "a unit's name is escaped");
    let page = admin.get("/units/nx/wz/c").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("<script>"), "no script at all on the page");
    assert!(page.body.contains("<svg class=\"uptime\""), "the uptime chart");
    assert!(page.body.contains("<svg class=\"netmap\""), "the network map");
    assert!(page.body.contains("99.5%"));
    assert!(page.body.contains("评分明细") && page.body.contains("四.1"));
    // English on request, remembered in a cookie.
    let en = admin.get("/units/nx/wz/c?lang=en").await;
    assert!(en.body.contains("The sheet, item by item"));
    assert!(
        en.headers
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.starts_with("lang=en")))
    );
    // A bad period is a clear 400.
    let p = admin.get("/api/v1/dashboard/units/nx/wz/c/sheet?period=soon").await;
    assert_eq!(p.status, 400);
    assert!(p.json()["error"].as_str().is_some_and(|e| e.contains("期间")));
    // The self-check report opens in the browser.
    let p = admin.get("/units/nx/wz/c/report.html").await;
    assert_eq!(p.status, 200);
    assert!(p.body.contains("自检报告"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_authors_level_or_higher_withdraws_and_bad_input_gets_a_clear_answer() {
    for (backend, db) in common::database_urls("web_withdraw").await {
        let r = start(&format!("withdraw-{backend}"), db).await;
        let admin = logged_in(&r, "admin").await;
        let city = logged_in(&r, "city").await;
        let reviewer = logged_in(&r, "reviewer").await;
        let (admin_csrf, city_csrf, reviewer_csrf) = (admin.csrf().await, city.csrf().await, reviewer.csrf().await);
        let review = |who: &str| serde_json::json!({"item": "四.1", "kind": "review", "score": 2, "reviewer": who, "note": "制度齐全", "period": "2026"});
        let id_of = |p: Page| {
            assert_eq!(p.status, 201, "{}", p.body);
            p.json()["id"].as_str().expect("id").to_string()
        };
        let by_province = id_of(
            admin
                .post_json(
                    "/api/v1/dashboard/units/nx/yc/a/entries",
                    Some(&admin_csrf),
                    &review("省厅"),
                )
                .await,
        );
        let by_reviewer = id_of(
            reviewer
                .post_json(
                    "/api/v1/dashboard/units/nx/yc/a/entries",
                    Some(&reviewer_csrf),
                    &review("李评审"),
                )
                .await,
        );
        let withdraw = |id: &str| serde_json::json!({ "id": id });
        // The province's review: not the city's nor the reviewer's to withdraw.
        for (who, b, csrf) in [("city", &city, &city_csrf), ("reviewer", &reviewer, &reviewer_csrf)] {
            let p = b
                .post_json(
                    "/api/v1/dashboard/units/nx/yc/a/entries/withdraw",
                    Some(csrf),
                    &withdraw(&by_province),
                )
                .await;
            assert_eq!(p.status, 403, "{backend}: {who}: {}", p.body);
            assert!(
                p.json()["error"].as_str().is_some_and(|e| e.contains("省级管理员录入")),
                "{}",
                p.body
            );
        }
        // The form on the page offers the city no withdraw button for it.
        let page = city.get("/units/nx/yc/a?period=2026").await;
        assert!(
            !page.body.contains(&by_province),
            "{backend}: no button for the province's entry"
        );
        // The reviewer's review: the city (a higher level) may withdraw it.
        let p = city
            .post_json(
                "/api/v1/dashboard/units/nx/yc/a/entries/withdraw",
                Some(&city_csrf),
                &withdraw(&by_reviewer),
            )
            .await;
        assert_eq!(p.status, 200, "{backend}: {}", p.body);
        let p = admin
            .post_json(
                "/api/v1/dashboard/units/nx/yc/a/entries/withdraw",
                Some(&admin_csrf),
                &withdraw(&by_province),
            )
            .await;
        assert_eq!(p.status, 200, "{backend}: the province withdraws its own");

        // A NUL in a note: a clear 400 on both databases, nothing stored.
        let mut bad = review("省厅");
        bad["note"] = serde_json::json!("制度\u{0}齐全");
        let p = admin
            .post_json("/api/v1/dashboard/units/nx/yc/a/entries", Some(&admin_csrf), &bad)
            .await;
        assert_eq!(p.status, 400, "{backend}: {}", p.body);
        assert!(
            p.json()["error"]
                .as_str()
                .is_some_and(|e| e.contains("note") && e.contains("NUL"))
        );

        // A body over the dashboard's limit: 413 in JSON on the API; HSTS on every answer.
        let p = admin
            .post_json(
                "/api/v1/dashboard/units/nx/yc/a/entries",
                Some(&admin_csrf),
                &serde_json::json!({"note": "x".repeat(70 * 1024)}),
            )
            .await;
        assert_eq!(p.status, 413, "{backend}");
        assert!(
            p.json()["error"].as_str().is_some_and(|e| e.contains("KiB")),
            "{}",
            p.body
        );
        assert!(
            p.headers
                .get("strict-transport-security")
                .is_some_and(|v| v.to_str().is_ok_and(|v| v.contains("max-age="))),
            "{backend}: HSTS"
        );
        let p = admin.get("/api/v1/dashboard/no-such-thing").await;
        assert_eq!(p.status, 404);
        assert!(
            p.json()["error"].is_string(),
            "{backend}: a 404 of the API is JSON: {}",
            p.body
        );

        // A login posted from another site (login CSRF) is refused before the password.
        let b = Browser::new(&r.url, &r.ca_pem);
        let p = b
            .send(
                b.client
                    .post(format!("{}/login", b.base))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("origin", "https://evil.example")
                    .body(form_encode(&[("user", "admin"), ("password", PASSWORD)])),
            )
            .await;
        assert_eq!(p.status, 403, "{backend}: {}", p.body);
        assert!(session_cookie(&p).is_none());
    }
}
