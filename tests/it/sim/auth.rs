//! Token endpoints: grants, client authentication styles, TTL enforcement, discovery.

use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use super::support::{client, get_json, quiet, small, start, token};

#[tokio::test]
async fn v1_and_v2_token_paths_accept_body_or_basic_client_credentials() {
    let sim = quiet(3).await;
    let creds = sim.credentials().clone();
    for path in ["/api/v1/oauth/token", "/api/v2/oauth/token"] {
        let url = format!("{}{path}", sim.base_url());
        let body: Value = client()
            .post(&url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &creds.client_id),
                ("client_secret", &creds.client_secret),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert!(body["expires_in"].as_u64().unwrap() > 0);
        let basic = client()
            .post(&url)
            .basic_auth(&creds.client_id, Some(&creds.client_secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "recording:read"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(basic.status(), 200);
        assert_eq!(
            basic.json::<Value>().await.unwrap()["scope"],
            "recording:read"
        );
    }
    assert_eq!(sim.stats()["tokens_issued"], 4);
}

#[tokio::test]
async fn wrong_secret_is_refused_as_invalid_client() {
    let sim = quiet(1).await;
    let response = client()
        .post(format!("{}/api/v2/oauth/token", sim.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &sim.credentials().client_id),
            ("client_secret", "nope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );
}

#[tokio::test]
async fn requests_without_or_after_token_expiry_get_401_with_challenge() {
    let mut config = small(2);
    config.faults.token_ttl = Duration::from_millis(1500);
    let sim = start(config).await;
    let (status, _) = get_json(&sim, "made-up", "/api/v2/recording/search").await;
    assert_eq!(status, 401);
    let token = token(&sim).await;
    let (status, _) = get_json(&sim, &token, "/api/v2/recording/search").await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let response = client()
        .get(format!("{}/api/v2/recording/search", sim.base_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.contains("invalid_token") && challenge.contains("expired"),
        "{challenge}"
    );
    assert_eq!(sim.stats()["unauthorized_401"], 2);
}

#[tokio::test]
async fn real_dialect_discovery_password_grant_and_refresh() {
    let sim = quiet(1).await;
    let base = sim.base_url().to_string();
    let creds = sim.credentials().clone();
    let oidc: Value = client()
        .get(format!("{base}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token_endpoint = oidc["token_endpoint"].as_str().unwrap().to_string();
    assert_eq!(token_endpoint, format!("{base}/auth/token"));
    let body: Value = client()
        .post(&token_endpoint)
        .basic_auth(&creds.client_id, Some(&creds.client_secret))
        .form(&[
            ("grant_type", "password"),
            ("username", &creds.access_key_id),
            ("password", &creds.access_key_secret),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = body["access_token"].as_str().unwrap();
    let claims = access.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    let tenant = claims["tenantId"].as_str().unwrap();
    let config: Value = client()
        .get(format!(
            "{base}/.well-known/cxone-configuration?tenantId={tenant}"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["api_endpoint"], base.as_str());
    let refreshed = client()
        .post(&token_endpoint)
        .basic_auth(&creds.client_id, Some(&creds.client_secret))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", body["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);
    let wrong_user = client()
        .post(&token_endpoint)
        .basic_auth(&creds.client_id, Some(&creds.client_secret))
        .form(&[
            ("grant_type", "password"),
            ("username", "x"),
            ("password", "y"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_user.status(), 400);
    let legacy = client()
        .post(format!("{base}/authentication/v1/token/access-key"))
        .json(&serde_json::json!({ "accessKeyId": creds.access_key_id, "accessKeySecret": creds.access_key_secret }))
        .send()
        .await
        .unwrap();
    assert_eq!(legacy.status(), 200);
}
