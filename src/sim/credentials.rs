//! Credentials the simulator accepts, derived from the seed so a given `--seed` always
//! prints the same ones (handy for integrators' configuration files).

use super::rng::derive;

/// The client, access-key and webhook secrets a simulator accepts.
#[derive(Clone, PartialEq, Eq)]
pub struct SimCredentials {
    pub client_id: String,
    pub client_secret: String,
    pub access_key_id: String,
    pub access_key_secret: String,
    pub webhook_secret: String,
}

impl std::fmt::Debug for SimCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimCredentials")
            .field("client_id", &self.client_id)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

fn hex_words(seed: u64, salt: u64, words: u64) -> String {
    (0..words)
        .map(|w| format!("{:016x}", derive(seed, w, salt)))
        .collect()
}

impl SimCredentials {
    /// The credentials of a simulator started with `seed`.
    pub fn from_seed(seed: u64) -> Self {
        SimCredentials {
            client_id: format!("sim-client-{}", &hex_words(seed, 101, 1)[..8]),
            client_secret: hex_words(seed, 102, 2),
            access_key_id: format!("SIMAK{}", hex_words(seed, 103, 1)[..12].to_uppercase()),
            access_key_secret: hex_words(seed, 104, 2),
            webhook_secret: hex_words(seed, 105, 2),
        }
    }

    /// Tenant id of the simulated tenant (also a claim of the access tokens).
    pub fn tenant_id(&self) -> String {
        format!("11ef{}", &self.client_id[self.client_id.len() - 8..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_follow_the_seed_and_debug_hides_secrets() {
        assert_eq!(SimCredentials::from_seed(4), SimCredentials::from_seed(4));
        assert_ne!(
            SimCredentials::from_seed(4).client_secret,
            SimCredentials::from_seed(5).client_secret
        );
        let creds = SimCredentials::from_seed(4);
        let debug = format!("{creds:?}");
        assert!(!debug.contains(&creds.client_secret) && !debug.contains(&creds.webhook_secret));
    }
}
