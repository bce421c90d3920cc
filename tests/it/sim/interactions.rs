//! Seed 004: interactions query with cursor `pagination.next_page`, details, custom fields.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{Value, json};

use super::support::{get_json, quiet, send_json, token};

#[tokio::test]
async fn cursor_pagination_covers_every_closed_interaction_once_in_order() {
    let sim = quiet(120).await;
    let token = token(&sim).await;
    let mut body = json!({ "type": "interaction", "filter": "status:closed", "orderBy": "updatedTime desc", "pageSize": 7 });
    let (mut seen, mut last, mut total) = (HashSet::new(), String::from("9999"), 0);
    for _ in 0..100 {
        let (status, page) = send_json(
            &sim,
            &token,
            Method::POST,
            "/api/v2/interactions/query",
            &body,
        )
        .await;
        assert_eq!(status, 200, "{page}");
        total = page["pagination"]["total"].as_u64().unwrap();
        for ix in page["interactions"].as_array().unwrap() {
            assert_eq!(ix["status"], "closed");
            assert!(seen.insert(ix["id"].as_str().unwrap().to_string()));
            let updated = ix["updated_time"].as_str().unwrap().to_string();
            assert!(updated <= last, "{updated} after {last}");
            last = updated;
        }
        match page["pagination"]["next_page"].as_str() {
            Some(next) => body = json!({ "page_token": next }),
            None => break,
        }
    }
    assert_eq!(seen.len() as u64, total);
    assert!(total > 80 && total < 120, "{total}");
    let bad = send_json(
        &sim,
        &token,
        Method::POST,
        "/api/v2/interactions/query",
        &json!({ "filter": "colour:red" }),
    )
    .await;
    assert_eq!(bad.0, 400);
}

#[tokio::test]
async fn details_list_participants_and_media_and_custom_fields_update_closed_only() {
    let sim = quiet(40).await;
    let token = token(&sim).await;
    let query = json!({ "filter": "", "pageSize": 40 });
    let (_, page) = send_json(
        &sim,
        &token,
        Method::POST,
        "/api/v2/interactions/query",
        &query,
    )
    .await;
    let all = page["interactions"].as_array().unwrap();
    let closed = all.iter().find(|i| i["status"] == "closed").unwrap()["id"]
        .as_str()
        .unwrap();
    let open = all.iter().find(|i| i["status"] == "open").unwrap()["id"]
        .as_str()
        .unwrap();
    let (_, detail) = get_json(&sim, &token, &format!("/api/v2/interactions/{closed}")).await;
    assert_eq!(detail["participants"].as_array().unwrap().len(), 2);
    let media = detail["media"].as_array().unwrap();
    assert!(
        media.iter().any(|m| m["type"] == "recording"
            && m["playback_url"].as_str().unwrap().contains("/content"))
    );
    assert_eq!(detail["custom_fields"]["archival_status"], Value::Null);

    let (_, fields) = get_json(&sim, &token, "/api/v2/custom-fields").await;
    let field = fields[0]["id"].as_str().unwrap();
    let path = format!("/api/v2/interactions/{closed}/custom-fields/{field}");
    assert_eq!(
        send_json(
            &sim,
            &token,
            Method::PUT,
            &path,
            &json!({ "value": "archived" })
        )
        .await
        .0,
        200
    );
    let (_, detail) = get_json(&sim, &token, &format!("/api/v2/interactions/{closed}")).await;
    assert_eq!(detail["custom_fields"]["archival_status"], "archived");
    let open_path = format!("/api/v2/interactions/{open}/custom-fields");
    let body = json!({ "field_id": field, "value": "archived" });
    assert_eq!(
        send_json(&sim, &token, Method::PATCH, &open_path, &body)
            .await
            .0,
        409
    );
    let unknown = format!("/api/v2/interactions/{closed}/custom-fields/cf-nope");
    assert_eq!(
        send_json(
            &sim,
            &token,
            Method::PUT,
            &unknown,
            &json!({ "value": "x" })
        )
        .await
        .0,
        404
    );
}
