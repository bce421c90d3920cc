//! "Did you mean …" for near misses: the closest known name by edit distance (adjacent
//! transpositions count as one edit, so `sha265` finds `sha256`).

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = match word.chars().count() {
        0..=2 => 0,
        3..=5 => 1,
        _ => 2,
    };
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, _)| *d <= limit && *d > 0)
        .min()
        .map(|(_, c)| c)
}

/// `"; did you mean `x`?"`, or nothing.
pub fn hint<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(word, candidates)
        .map(|c| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_are_found_and_strangers_are_not() {
        assert_eq!(closest("stor", ["store", "stores", "api"]), Some("store"));
        assert_eq!(closest("sha265", ["md5", "sha256"]), Some("sha256"));
        assert_eq!(closest("sise", ["size", "style"]), Some("size"));
        assert_eq!(closest("banana", ["store", "api"]), None);
        assert_eq!(closest("ab", ["ac"]), None);
        assert_eq!(hint("apu", ["api"]), "; did you mean `api`?");
    }
}
