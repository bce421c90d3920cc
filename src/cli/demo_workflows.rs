//! The workflows `cxpipe demo --workflow NAME` runs: for each shipped script, the simulator
//! settings it needs, the tenant it talks to (seed-style client credentials, or the real
//! platform's password grant) and the params that make it finish in a demo's time. Running
//! them is `demo.rs`'s job; this file only describes them.

use std::time::Duration;

use anyhow::Context as _;

use crate::sim::{SimConfig, SimCredentials};

/// One workflow the demo can run.
#[derive(Debug)]
pub struct DemoWorkflow {
    /// The script's name in `scripts/` (and the `--workflow` value).
    pub name: &'static str,
    /// Where its objects land, under the demo's `objects/`.
    pub output: &'static str,
    /// Where its run report lands, under the demo's `objects/`.
    pub reports: &'static str,
    /// Talks to the real dialect with the password grant (else seed-style client credentials).
    pub real_platform: bool,
    /// Adjusts the simulator for this workflow.
    sim: fn(&mut SimConfig),
    /// Asks the running simulator for recording ids to export (`interaction_ids`).
    needs_ids: bool,
    /// Fixed params, as TOML lines of `[tenants.demo.params]`.
    params: &'static str,
}

/// Every workflow the demo knows, the default first.
pub const WORKFLOWS: &[DemoWorkflow] = &[
    DemoWorkflow {
        name: "download_recordings",
        output: "recordings",
        reports: "reports",
        real_platform: false,
        sim: |_| {},
        needs_ids: false,
        params: "encrypt_key = \"demo\"\nprocessing_poll = \"2s\"\n",
    },
    DemoWorkflow {
        name: "retention_lifecycle",
        output: "reports/retention",
        reports: "reports/retention",
        real_platform: false,
        sim: |c| c.faults.job_duration = Duration::from_secs(1),
        needs_ids: false,
        params: "poll_every = \"500ms\"\njob_timeout = \"60s\"\n",
    },
    DemoWorkflow {
        name: "compliance_export",
        output: "compliance",
        reports: "reports/compliance",
        real_platform: false,
        sim: |c| {
            // Exported recordings must have media.
            (c.processing_share, c.archived_share, c.expired_share) = (0.0, 0.0, 0.0);
            c.faults.job_duration = Duration::from_secs(1);
        },
        needs_ids: true,
        params: "format = \"wav\"\njurisdiction = \"US-CA\"\n\
                 date_start = \"2023-06-01T00:00:00.000Z\"\ndate_end = \"2023-06-30T23:59:59.999Z\"\n\
                 batch_size = 3\nmax_jobs = 8\npoll_every = \"500ms\"\npoll_max = \"2s\"\njob_timeout = \"60s\"\n",
    },
    DemoWorkflow {
        name: "recordings_transcripts",
        output: "transcripts",
        reports: "reports/transcripts",
        real_platform: false,
        sim: |c| c.faults.transcript_late_delay = Duration::from_secs(2),
        needs_ids: false,
        params: "assembly_window = \"10s\"\nsegment_poll = \"1s\"\nprocessing_poll = \"1s\"\n",
    },
    DemoWorkflow {
        name: "archive_interactions",
        output: "interactions",
        reports: "reports/interactions",
        real_platform: false,
        sim: |_| {},
        needs_ids: false,
        params: "encrypt_key = \"demo\"\nbatch_size = 10\n",
    },
    DemoWorkflow {
        name: "export_contacts",
        output: "contacts",
        reports: "reports/contacts",
        real_platform: true,
        sim: |c| c.processing_delay = Duration::from_secs(2),
        needs_ids: false,
        params: "encrypt_key = \"demo\"\nsince = \"2020-01-01T00:00:00Z\"\nno_media_poll = \"1s\"\nno_media_looks = 6\n",
    },
];

/// The `--workflow` values.
pub const NAMES: [&str; 6] = [
    "download_recordings",
    "retention_lifecycle",
    "compliance_export",
    "recordings_transcripts",
    "archive_interactions",
    "export_contacts",
];

/// The workflow called `name`; the error lists the known ones.
pub fn find(name: &str) -> anyhow::Result<&'static DemoWorkflow> {
    WORKFLOWS
        .iter()
        .find(|w| w.name == name)
        .with_context(|| format!("no demo workflow {name:?}; known: {}", NAMES.join(", ")))
}

impl DemoWorkflow {
    /// Applies this workflow's simulator settings.
    pub fn adjust(&self, config: &mut SimConfig) {
        (self.sim)(config);
    }

    /// The secret files the tenant reads (name under `secrets/`, value).
    pub fn secrets<'a>(&self, creds: &'a SimCredentials) -> Vec<(&'static str, &'a str)> {
        let mut out = vec![("client_secret", creds.client_secret.as_str())];
        if self.real_platform {
            out.push(("access_key_id", creds.access_key_id.as_str()));
            out.push(("access_key_secret", creds.access_key_secret.as_str()));
        }
        out
    }

    /// The `[tenants.demo]` table with its params; `base_url` is the running simulator's.
    pub async fn tenant_config(&self, base_url: &str, client_id: &str) -> anyhow::Result<String> {
        let auth = if self.real_platform {
            format!(
                "auth = {{ kind = \"password\", issuer = \"{base_url}\", client_id = \"{client_id}\", \
                 client_secret = {{ file = \"secrets/client_secret\" }}, username = {{ file = \"secrets/access_key_id\" }}, \
                 password = {{ file = \"secrets/access_key_secret\" }} }}\n\
                 # The documented limits, with media playback raised from 150 per 5 minutes for the demo.\n\
                 rate_limits = {{ preset = \"cxone-real\", families = {{ media-playback = {{ paths = [\"/media-playback/v1\"], requests = 20, per = \"1s\" }} }} }}\n"
            )
        } else {
            format!(
                "base_url = \"{base_url}\"\nauth = {{ kind = \"client_credentials\", token_url = \"/api/v2/oauth/token\", \
                 client_id = \"{client_id}\", client_secret = {{ file = \"secrets/client_secret\" }}, \
                 credentials_in = \"body\", scope = \"recording:read recording:download\" }}\n"
            )
        };
        let mut params = self.params.to_string();
        if self.needs_ids {
            params.push_str(&format!(
                "interaction_ids = {:?}\n",
                recording_ids(base_url, 6).await?
            ));
        }
        Ok(format!(
            "[tenants.demo]\n{auth}\n[tenants.demo.params]\n{params}"
        ))
    }
}

/// The first `n` recording ids of the running simulator (from its truth endpoint).
async fn recording_ids(base_url: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let url = format!("{base_url}/_sim/truth/recordings?limit={n}");
    let truth: serde_json::Value = reqwest::get(&url)
        .await
        .and_then(reqwest::Response::error_for_status)
        .context("reading recording ids from the demo simulator")?
        .json()
        .await
        .context("reading recording ids from the demo simulator")?;
    let ids = truth["recordings"]
        .as_array()
        .context("the demo simulator listed no recordings")?
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_has_a_workflow_and_an_embedded_script() {
        assert_eq!(WORKFLOWS.len(), NAMES.len());
        for name in NAMES {
            let w = find(name).unwrap();
            assert!(
                crate::engine::embedded::script(w.name).is_some(),
                "{name} is not built in"
            );
        }
        assert!(
            find("nope")
                .unwrap_err()
                .to_string()
                .contains("export_contacts")
        );
    }
}
