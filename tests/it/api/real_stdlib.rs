//! The real-dialect stdlib modules (`stdlib/cxone/real/*.rhai`) against the simulator's
//! real routes: completed contacts by next link and incrementally, media playback, bulk
//! media download, data extraction and analytics transcripts.

use cxpipe::api::{Api, TenantConfig};
use cxpipe::sim::{SimConfig, SimServer};
use rhai::module_resolvers::FileModuleResolver;

/// Runs `script` with the stdlib resolvable and `api` in scope, on a blocking thread.
async fn run(api: &Api, script: &str) -> Result<rhai::Dynamic, String> {
    let api = api.clone();
    let script = script.to_string();
    tokio::task::spawn_blocking(move || {
        let mut engine = rhai::Engine::new();
        cxpipe::api::register(&mut engine);
        let stdlib = concat!(env!("CARGO_MANIFEST_DIR"), "/stdlib");
        engine.set_module_resolver(FileModuleResolver::new_with_path(stdlib));
        let mut scope = rhai::Scope::new();
        scope.push("api", api);
        engine
            .eval_with_scope::<rhai::Dynamic>(&mut scope, &script)
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap()
}

/// A fault-free simulator and a password-grant tenant discovering its API base (the
/// documented budgets, which would space media-download calls 20 s apart, are raised).
async fn real_tenant(dir: &tempfile::TempDir) -> (SimServer, Api) {
    let config = SimConfig {
        recordings: 300,
        interactions: 300,
        ..SimConfig::default()
    }
    .without_faults();
    let sim = SimServer::start(config).await.unwrap();
    let creds = sim.credentials();
    for (file, value) in [
        ("client", &creds.client_secret),
        ("ak", &creds.access_key_id),
        ("aks", &creds.access_key_secret),
    ] {
        std::fs::write(dir.path().join(file), value).unwrap();
    }
    let text = format!(
        r#"
        [auth]
        kind = "password"
        issuer = "{}"
        client_id = "{}"
        client_secret = {{ file = "client" }}
        username = {{ file = "ak" }}
        password = {{ file = "aks" }}
        [rate_limits]
        preset = "cxone-real"
        [rate_limits.families]
        data-extraction = {{ paths = ["/data-extraction/v1"], requests = 100, per = "1s" }}
        media-download = {{ paths = ["/media-download/v1"], requests = 100, per = "1s" }}
        media-playback = {{ paths = ["/media-playback/v1"], requests = 100, per = "1s" }}
        "#,
        sim.base_url(),
        creds.client_id
    );
    let config: TenantConfig = toml::from_str(&text).unwrap();
    let api = Api::new("real", &config, dir.path()).unwrap();
    (sim, api)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_playback_and_analytics_modules_walk_the_real_dialect() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, api) = real_tenant(&dir).await;
    let script = r#"
        import "cxone/real/contacts" as contacts;
        import "cxone/real/media_playback" as playback;
        import "cxone/real/analytics" as analytics;
        let ids = [];
        for c in contacts::completed(api, #{ start_date: "2026-10-01T00:00:00Z", end_date: "2026-12-01T00:00:00Z", top: 40 }) {
            ids.push(c.contactId);
        }
        let recent = 0;
        for c in contacts::completed(api, #{ updated_since: "2026-11-10T00:00:00Z", top: 40 }) { recent += 1; }
        let voice = 0;
        for id in ids {
            let media = playback::contact(api, id, "all");
            voice += playback::voice_files(media).len();
            if voice > 0 { break; }
        }
        let segments = 0;
        let blocks = 0;
        for seg in analytics::segments(api, "2026-10-01T00:00:00Z", "2026-12-01T00:00:00Z") {
            segments += 1;
            if segments == 1 { blocks = analytics::transcript(api, seg.segmentId).len(); }
        }
        #{ contacts: ids.len(), recent: recent, voice: voice, segments: segments, blocks: blocks,
           poll_time: contacts::poll_time(api, "2026-11-10T00:00:00Z") }
    "#;
    let out = run(&api, script).await.unwrap();
    let out: rhai::Map = out.cast();
    let int = |k: &str| out[k].as_int().unwrap();
    assert!(int("contacts") > 200, "{out:?}");
    assert!(
        int("recent") > 0 && int("recent") < int("contacts"),
        "{out:?}"
    );
    assert!(
        int("voice") > 0 && int("segments") > 0 && int("blocks") > 0,
        "{out:?}"
    );
    assert!(out["poll_time"].is_string(), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_download_and_data_extraction_jobs_are_submitted_and_awaited() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, api) = real_tenant(&dir).await;
    sim.control(&serde_json::json!({"job_duration": "200ms"}))
        .unwrap();
    let script = r#"
        import "cxone/real/contacts" as contacts;
        import "cxone/real/media_download" as md;
        import "cxone/real/data_extraction" as dx;
        import "cxone/real/limits" as limits;
        let ids = [];
        for c in contacts::completed(api, #{ top: 5 }) { if ids.len() < 3 { ids.push(c.contactId); } }
        let request = md::submit(api, "contacts", ids);
        let done = md::wait(api, request, #{ timeout: "1m", every: "100ms" });
        let files = md::files(api, done);
        let job = dx::submit(api, "2026-10-01T00:00:00Z", "2026-12-01T00:00:00Z");
        let url = dx::wait(api, job, #{ timeout: "1m", every: "100ms" });
        let many = [];
        for i in 0..101 { many.push(i); }
        let too_many = "";
        try { md::submit(api, "contacts", many); } catch (e) { too_many = e; }
        #{ status: done.status, files: files.len(), url: url, too_many: too_many,
           per_5m: limits::documented()["media-download"].requests, batches: limits::download_requests(250) }
    "#;
    let out: rhai::Map = run(&api, script).await.unwrap().cast();
    assert_eq!(out["status"].clone().into_string().unwrap(), "COMPLETED");
    assert!(out["files"].as_int().unwrap() > 0, "{out:?}");
    assert!(
        out["url"]
            .clone()
            .into_string()
            .unwrap()
            .starts_with(sim.base_url()),
        "{out:?}"
    );
    assert!(
        out["too_many"].to_string().contains("at most 100"),
        "{out:?}"
    );
    assert_eq!(
        (
            out["per_5m"].as_int().unwrap(),
            out["batches"].as_int().unwrap()
        ),
        (15, 3)
    );
}
