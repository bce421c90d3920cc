//! Interactions (seed 004) and completed contacts (real dialect), derived per index like
//! recordings. Interaction `i` is the contact of recording `i` when that recording exists.

use serde_json::{Value, json};

use super::dataset::{Dataset, agent_name, rfc3339_ms};
use super::rng::{below, derive, unit};

const SALT_KIND: u64 = 51;
const SALT_OPEN: u64 = 52;
const SALT_UPDATE: u64 = 53;
const SALT_PHONE: u64 = 54;
const FIRST_CONTACT_ID: u64 = 700_000_000;
const SKILLS: [&str; 4] = ["Billing", "Support", "Sales", "Retention"];

/// One interaction, derived from `(seed, index)`.
#[derive(Clone, Debug)]
pub struct Interaction {
    pub index: usize,
    pub id: String,
    /// Numeric contact id of the real dialect (`contactId`, `acd-call-id`).
    pub contact_id: u64,
    pub kind: &'static str,
    pub closed: bool,
    pub created_ms: i64,
    pub ended_ms: i64,
    pub updated_ms: i64,
    pub agent_id: u64,
    pub agent_name: String,
    pub skill: &'static str,
    pub customer_address: String,
    /// The recording of this interaction, if it has one.
    pub recording: Option<usize>,
}

/// Number of interactions of a dataset.
pub fn count(ds: &Dataset) -> usize {
    ds.interaction_count()
}

/// The fields queries filter and sort on, derived without building strings.
#[derive(Clone, Copy, Debug)]
pub struct InteractionKey {
    pub index: usize,
    pub kind: &'static str,
    pub closed: bool,
    pub created_ms: i64,
    pub ended_ms: i64,
    pub updated_ms: i64,
    agent: u64,
}

/// Derives the query fields of interaction `index`.
pub fn key(ds: &Dataset, index: usize) -> InteractionKey {
    let seed = ds.seed();
    let i = index as u64;
    let recording = (index < ds.len()).then_some(index);
    let kind = match (recording, below(derive(seed, i, SALT_KIND), 10)) {
        (Some(_), _) => "voice",
        (None, 0..=5) => "chat",
        _ => "email",
    };
    let (created_ms, duration_ms, agent) = match recording {
        Some(r) => (
            ds.created_ms(r),
            ds.duration_of(r) as i64 * 1000,
            ds.agent_of(r),
        ),
        None => {
            let created = ds.config().newest_at * 1000 - (count(ds) - index) as i64 * 60_000;
            (
                created,
                120_000 + below(derive(seed, i, SALT_UPDATE), 600_000) as i64,
                below(derive(seed, i, SALT_KIND), 40),
            )
        }
    };
    let ended_ms = created_ms + duration_ms;
    InteractionKey {
        index,
        kind,
        closed: unit(derive(seed, i, SALT_OPEN)) >= 0.15,
        created_ms,
        ended_ms,
        updated_ms: ended_ms + 300_000 + below(derive(seed, i, SALT_UPDATE), 7_200_000) as i64,
        agent,
    }
}

/// Derives interaction `index`.
pub fn interaction(ds: &Dataset, index: usize) -> Interaction {
    let seed = ds.seed();
    let i = index as u64;
    let k = key(ds, index);
    Interaction {
        index,
        id: format!("ix-{index}-{:04x}", derive(seed, i, SALT_KIND) & 0xFFFF),
        contact_id: FIRST_CONTACT_ID + i,
        kind: k.kind,
        closed: k.closed,
        created_ms: k.created_ms,
        ended_ms: k.ended_ms,
        updated_ms: k.updated_ms,
        agent_id: 100_000 + k.agent,
        agent_name: agent_name(k.agent),
        skill: SKILLS[below(derive(seed, i, SALT_PHONE), 4) as usize],
        customer_address: format!("+1555{:07}", below(derive(seed, i, SALT_PHONE), 10_000_000)),
        recording: (index < ds.len()).then_some(index),
    }
}

/// Index of a seed-004 interaction id (`ix-<index>-<check>`).
pub fn parse_id(ds: &Dataset, id: &str) -> Option<usize> {
    let index: usize = id.strip_prefix("ix-")?.split('-').next()?.parse().ok()?;
    (index < count(ds) && interaction(ds, index).id == id).then_some(index)
}

/// Index of a real-dialect contact id.
pub fn parse_contact_id(ds: &Dataset, id: &str) -> Option<usize> {
    let n: u64 = id.trim().parse().ok()?;
    let index = n.checked_sub(FIRST_CONTACT_ID)? as usize;
    (index < count(ds)).then_some(index)
}

impl Interaction {
    /// Participants in the seed-004 shape.
    pub fn participants(&self) -> Value {
        json!([
            { "id": format!("agent-{}", self.agent_id), "type": "agent", "address": format!("agent{}@sim.cxone", self.agent_id), "state": "disconnected" },
            { "id": format!("customer-{}", self.contact_id), "type": "customer", "address": self.customer_address, "state": "disconnected" },
        ])
    }

    /// The real-dialect completed-contact JSON.
    pub fn completed_contact(&self) -> Value {
        json!({
            "contactId": self.contact_id,
            "masterContactId": self.contact_id,
            "contactStartDate": rfc3339_ms(self.created_ms),
            "contactEndDate": rfc3339_ms(self.ended_ms),
            "agentId": self.agent_id,
            "agentName": self.agent_name,
            "skillName": self.skill,
            "mediaTypeName": match self.kind { "voice" => "Call", "chat" => "Chat", _ => "Email" },
            "fromAddress": self.customer_address,
            "toAddress": "+18005550100",
            "totalDurationSeconds": (self.ended_ms - self.created_ms) / 1000,
            "lastUpdateTime": rfc3339_ms(self.updated_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::config::SimConfig;

    #[test]
    fn ids_round_trip_and_voice_interactions_own_their_recording() {
        let ds = Dataset::new(&SimConfig {
            recordings: 10,
            interactions: 30,
            ..SimConfig::default()
        });
        for i in [0, 9, 10, 29] {
            let ix = interaction(&ds, i);
            assert_eq!(parse_id(&ds, &ix.id), Some(i));
            assert_eq!(parse_contact_id(&ds, &ix.contact_id.to_string()), Some(i));
            assert!(ix.updated_ms > ix.ended_ms && ix.ended_ms > ix.created_ms);
        }
        assert_eq!(interaction(&ds, 3).recording, Some(3));
        assert_eq!(interaction(&ds, 3).kind, "voice");
        assert_eq!(interaction(&ds, 12).recording, None);
        assert_eq!(parse_id(&ds, "ix-3-zzzz"), None);
        assert_eq!(parse_contact_id(&ds, "700000030"), None);
    }
}
