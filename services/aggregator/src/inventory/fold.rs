//! The inventory fold: sightings (`scans.sightings`) and triage decisions (`scans.triage`) into
//! inventory items, one per secret per repository.
//!
//! Laws (property-tested below):
//! - **Idempotent.** Folding a sighting or a decision again changes nothing, not even
//!   `inputs_folded`: the scanner may write a sighting twice after a crash, a client may retry.
//! - **Streams may interleave.** The two topics are read side by side, so a decision may be
//!   folded before or after a sighting written earlier or later; the status, locations, trail
//!   and tip are the same. That is why reopening compares times, not arrival order: a resolved
//!   item reopens (re-leaked) when it is seen at a location (path and line) first seen by a scan
//!   that *started after* the resolution. Seeing it again where it already was (history scans
//!   see a removed secret forever) does not reopen it.
//! - **Tip.** `in_tip` is whether the latest complete scan of the default ref's tip saw the item
//!   (its `tip_seen_at` is not older than its `tip_checked_at`); an item no such scan saw yet
//!   is not in the tip.

use std::collections::{HashMap, HashSet};

use scanstream_contracts::inventory::{
    InventoryItem, ItemId, ItemLocation, ItemStatus, SecretSeen, Sighting, SightingPayload,
    TriageDecision, TriageEntry,
};

/// Locations kept per item; further places are not recorded on the item.
pub const MAX_LOCATIONS: usize = 200;
/// Triage entries kept per item, the oldest dropped first (the topic keeps them all).
pub const MAX_TRIAGE: usize = 100;

fn in_tip(item: &InventoryItem) -> bool {
    match (item.tip_seen_at, item.tip_checked_at) {
        (Some(seen), Some(checked)) => seen >= checked,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Counts a change: `inputs_folded` and `updated_at` move only when something else did.
fn changed(before: Option<&InventoryItem>, mut after: InventoryItem, at: i64) -> InventoryItem {
    after.in_tip = in_tip(&after);
    match before {
        Some(b) if *b == after => after,
        _ => {
            after.inputs_folded += 1;
            after.updated_at = after.updated_at.max(at);
            after
        }
    }
}

/// Folds one `SecretSeen` of `sighting` into its item (`None` for an item not seen yet).
pub fn see(item: Option<&InventoryItem>, sighting: &Sighting, seen: &SecretSeen) -> InventoryItem {
    let at = sighting.scan_started_at;
    let location = ItemLocation {
        path: seen.path.clone(),
        line: seen.line,
        commit: seen.commit.clone(),
        first_job: sighting.job_id,
        last_job: sighting.job_id,
        first_seen: at,
        last_seen: at,
    };
    let Some(before) = item else {
        let mut new = InventoryItem {
            item_id: ItemId::of(&sighting.repo_url, &seen.fingerprint),
            repo_url: sighting.repo_url.clone(),
            fingerprint: seen.fingerprint.clone(),
            rule_id: seen.rule_id.clone(),
            severity: seen.severity,
            engines: vec![seen.engine.clone()],
            redacted_preview: seen.redacted_preview.clone(),
            status: ItemStatus::Open,
            reason: None,
            status_changed_at: at,
            reopened: 0,
            locations: vec![location],
            locations_total: 1,
            first_seen: at,
            last_seen: at,
            first_job: sighting.job_id,
            last_job: sighting.job_id,
            in_tip: false,
            tip_seen_at: sighting.tip.then_some(at),
            tip_checked_at: None,
            triage: Vec::new(),
            inputs_folded: 0,
            updated_at: seen.detected_at,
        };
        settle_status(&mut new);
        return changed(None, new, seen.detected_at);
    };
    let mut item = before.clone();
    let key = |l: &ItemLocation| (l.path.clone(), l.line);
    match item.locations.binary_search_by_key(&key(&location), key) {
        Ok(i) => {
            let l = &mut item.locations[i];
            if at < l.first_seen {
                l.first_seen = at;
                l.first_job = sighting.job_id;
            }
            if at > l.last_seen {
                l.last_seen = at;
                l.last_job = sighting.job_id;
            }
            // The first commit a history scan saw it in here (the smallest, so any order of
            // sightings keeps the same one).
            if location.commit.is_some() && (l.commit.is_none() || location.commit < l.commit) {
                l.commit = location.commit.clone();
            }
        }
        // Past MAX_LOCATIONS places, new places are not recorded (the sightings keep them).
        Err(i) if item.locations.len() < MAX_LOCATIONS => {
            item.locations.insert(i, location);
            item.locations_total += 1;
        }
        Err(_) => {}
    }
    if at < item.first_seen {
        item.first_seen = at;
        item.first_job = sighting.job_id;
    }
    if at >= item.last_seen {
        if at > item.last_seen {
            item.last_job = sighting.job_id;
        }
        item.last_seen = at;
        item.redacted_preview = seen.redacted_preview.clone();
    }
    if let Err(i) = item.engines.binary_search(&seen.engine) {
        item.engines.insert(i, seen.engine.clone());
    }
    if sighting.tip && item.tip_seen_at.is_none_or(|t| t < at) {
        item.tip_seen_at = Some(at);
    }
    settle_status(&mut item);
    changed(Some(before), item, seen.detected_at)
}

/// Sets the status from the trail and the locations, so that any order of reading gives the
/// same status: the latest decision's, except that a resolution is undone (re-leaked) by a
/// location first seen by a scan that started after it. `reopened` counts the resolutions so
/// undone.
fn settle_status(item: &mut InventoryItem) {
    let firsts: Vec<i64> = item.locations.iter().map(|l| l.first_seen).collect();
    let leaked_between = |from: i64, to: i64| {
        firsts
            .iter()
            .filter(|&&f| f > from && f <= to)
            .min()
            .copied()
    };
    item.reopened = 0;
    for (i, d) in item.triage.iter().enumerate() {
        let next = item.triage.get(i + 1).map_or(i64::MAX, |n| n.decided_at);
        if d.to_status == ItemStatus::Resolved && leaked_between(d.decided_at, next).is_some() {
            item.reopened += 1;
        }
    }
    match item.triage.last() {
        None => {
            item.status = ItemStatus::Open;
            item.reason = None;
            item.status_changed_at = item.first_seen;
        }
        Some(d) => match leaked_between(d.decided_at, i64::MAX) {
            Some(first) if d.to_status == ItemStatus::Resolved => {
                item.status = ItemStatus::Open;
                item.reason = None;
                item.status_changed_at = first;
            }
            _ => {
                item.status = d.to_status;
                item.reason = d.reason;
                item.status_changed_at = d.decided_at;
            }
        },
    }
}

/// Applies a complete tip scan of `sighting`'s repository to one of its items: an item that
/// scan (or a newer one) did not see is no longer in the tip.
pub fn tip_scanned(item: &InventoryItem, sighting: &Sighting, completed_at: i64) -> InventoryItem {
    let at = sighting.scan_started_at;
    let mut after = item.clone();
    if after.tip_checked_at.is_none_or(|c| c < at) {
        after.tip_checked_at = Some(at);
    }
    changed(Some(item), after, completed_at)
}

/// Folds a triage decision into its item; `None` when the item does not exist (the API only
/// accepts decisions about items it has, so this is a decision from another deployment or a
/// hand-written record).
pub fn decide(item: Option<&InventoryItem>, decision: &TriageDecision) -> Option<InventoryItem> {
    let before = item?;
    if before
        .triage
        .iter()
        .any(|t| t.decision_id == decision.decision_id)
    {
        return Some(before.clone());
    }
    let mut item = before.clone();
    item.triage.push(TriageEntry {
        decision_id: decision.decision_id,
        actor: decision.actor.clone(),
        decided_at: decision.decided_at,
        from_status: decision.from_status,
        to_status: decision.to_status,
        reason: decision.reason,
        comment: decision.comment.clone(),
    });
    // Decisions apply in decision-time order whatever order they are read in.
    item.triage
        .sort_by_key(|t| (t.decided_at, t.decision_id.as_u128()));
    if item.triage.len() > MAX_TRIAGE {
        let drop = item.triage.len() - MAX_TRIAGE;
        item.triage.drain(..drop);
    }
    settle_status(&mut item);
    Some(changed(Some(before), item, decision.decided_at))
}

/// One input of the inventory, as read.
#[derive(Debug, Clone)]
pub enum Input {
    Sighting(Sighting),
    Decision(TriageDecision),
}

/// Folds `inputs` in order into `items` (at least every item they touch, updated in place;
/// for a `TipScanned`, every item of its repository); returns the ids of the items that
/// changed. The processor folds a batch with it, `scanstream audit` a whole history.
pub fn fold_batch(inputs: &[Input], items: &mut HashMap<ItemId, InventoryItem>) -> HashSet<ItemId> {
    let mut dirty = HashSet::new();
    let mut update = |items: &mut HashMap<ItemId, InventoryItem>, next: InventoryItem| {
        let id = next.item_id;
        if items.get(&id) != Some(&next) {
            dirty.insert(id);
            items.insert(id, next);
        }
    };
    for input in inputs {
        match input {
            Input::Sighting(s) => match &s.payload {
                SightingPayload::SecretSeen(seen) => {
                    let id = ItemId::of(&s.repo_url, &seen.fingerprint);
                    let next = see(items.get(&id), s, seen);
                    update(items, next);
                }
                SightingPayload::TipScanned(done) => {
                    let (low, high) = ItemId::range_of(&s.repo_url);
                    let of_repo: Vec<InventoryItem> = items
                        .values()
                        .filter(|i| (low..=high).contains(&i.item_id.0.as_u128()))
                        .map(|i| tip_scanned(i, s, done.completed_at))
                        .collect();
                    for next in of_repo {
                        update(items, next);
                    }
                }
            },
            Input::Decision(d) => match decide(items.get(&d.item_id), d) {
                Some(next) => update(items, next),
                None => {
                    tracing::warn!(item = %d.item_id, "triage decision about an unknown item skipped")
                }
            },
        }
    }
    dirty
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use scanstream_contracts::finding::Severity;
    use scanstream_contracts::inventory::{SightingPayload, TipScanned, TriageReason};
    use scanstream_contracts::{JobId, RunId};

    use super::*;

    const REPO: &str = "https://git.example.com/team/app.git";

    fn sighting(job: &str, started: i64, tip: bool, payload: SightingPayload) -> Sighting {
        let job_id = JobId::from_name(job);
        Sighting {
            repo_url: REPO.into(),
            job_id,
            run_id: RunId::derived(job_id, "r"),
            attempt: 1,
            scan_started_at: started,
            tip,
            payload,
        }
    }

    fn seen(fingerprint: &str, path: &str) -> SecretSeen {
        SecretSeen {
            fingerprint: fingerprint.into(),
            rule_id: "github-pat".into(),
            severity: Severity::High,
            engine: "secrets".into(),
            path: path.into(),
            line: 1,
            commit: None,
            redacted_preview: "token = ghp_****".into(),
            detected_at: 0,
        }
    }

    fn decision(n: u128, to: ItemStatus, reason: Option<TriageReason>, at: i64) -> TriageDecision {
        TriageDecision {
            decision_id: uuid::Uuid::from_u128(n),
            item_id: ItemId::of(REPO, "fp"),
            repo_url: REPO.into(),
            fingerprint: "fp".into(),
            from_status: ItemStatus::Open,
            to_status: to,
            reason,
            comment: None,
            actor: "alice".into(),
            decided_at: at,
        }
    }

    /// An input of a generated history.
    #[derive(Debug, Clone)]
    enum Input {
        Seen(Sighting, SecretSeen),
        Tip(Sighting),
        Decision(TriageDecision),
    }

    /// Folds inputs into the one item they concern ("fp"), like the processor does.
    fn fold_all(inputs: &[Input]) -> Option<InventoryItem> {
        let mut item: Option<InventoryItem> = None;
        for input in inputs {
            item = match input {
                Input::Seen(s, seen) => Some(see(item.as_ref(), s, seen)),
                Input::Tip(s) => item.as_ref().map(|i| tip_scanned(i, s, 0)),
                Input::Decision(d) => decide(item.as_ref(), d).or(item),
            };
        }
        item
    }

    #[test]
    fn a_secret_removed_from_the_tip_stays_open_and_says_so() {
        let s1 = sighting(
            "night-1",
            100,
            true,
            SightingPayload::SecretSeen(seen("fp", "a.env")),
        );
        let first = see(None, &s1, &seen("fp", "a.env"));
        assert!(first.in_tip);
        assert_eq!(first.status, ItemStatus::Open);
        let done1 = sighting(
            "night-1",
            100,
            true,
            SightingPayload::TipScanned(TipScanned {
                commit: None,
                findings: 1,
                completed_at: 110,
            }),
        );
        let after1 = tip_scanned(&first, &done1, 110);
        assert!(after1.in_tip);
        // The next night's tip scan does not see it.
        let done2 = sighting(
            "night-2",
            200,
            true,
            SightingPayload::TipScanned(TipScanned {
                commit: None,
                findings: 0,
                completed_at: 210,
            }),
        );
        let after2 = tip_scanned(&after1, &done2, 210);
        assert!(!after2.in_tip);
        assert_eq!(after2.status, ItemStatus::Open);
        assert_eq!(after2.inputs_folded, after1.inputs_folded + 1);
        // Folding the same tip scan again changes nothing.
        assert_eq!(tip_scanned(&after2, &done2, 210), after2);
    }

    #[test]
    fn a_revoked_secret_seen_by_a_later_scan_reopens_but_an_earlier_scan_does_not_reopen_it() {
        let s1 = sighting(
            "j1",
            100,
            false,
            SightingPayload::SecretSeen(seen("fp", "a.env")),
        );
        let item = see(None, &s1, &seen("fp", "a.env"));
        let resolved = decide(
            Some(&item),
            &decision(1, ItemStatus::Resolved, Some(TriageReason::Revoked), 150),
        )
        .unwrap();
        assert_eq!(resolved.status, ItemStatus::Resolved);
        assert_eq!(resolved.triage.len(), 1);
        // A scan that started before the resolution (read late) does not reopen it.
        let early = sighting(
            "j0",
            120,
            false,
            SightingPayload::SecretSeen(seen("fp", "b.env")),
        );
        let still = see(Some(&resolved), &early, &seen("fp", "b.env"));
        assert_eq!(still.status, ItemStatus::Resolved);
        assert_eq!(still.locations.len(), 2);
        // A later scan that sees it where it already was (a history scan) does not either.
        let later = sighting(
            "j2",
            200,
            false,
            SightingPayload::SecretSeen(seen("fp", "a.env")),
        );
        let known = see(Some(&still), &later, &seen("fp", "a.env"));
        assert_eq!(known.status, ItemStatus::Resolved);
        // A later scan that sees it somewhere new does: it leaked again.
        let again = sighting(
            "j3",
            250,
            false,
            SightingPayload::SecretSeen(seen("fp", "c.env")),
        );
        let reopened = see(Some(&known), &again, &seen("fp", "c.env"));
        assert_eq!(reopened.status, ItemStatus::Open);
        assert_eq!(reopened.status_changed_at, 250);
        assert_eq!(reopened.reopened, 1);
        assert_eq!(reopened.reason, None);
        // Ignored items stay ignored when seen again, anywhere.
        let ignored = decide(
            Some(&reopened),
            &decision(
                2,
                ItemStatus::Ignored,
                Some(TriageReason::FalsePositive),
                300,
            ),
        )
        .unwrap();
        let s4 = sighting(
            "j4",
            400,
            false,
            SightingPayload::SecretSeen(seen("fp", "d.env")),
        );
        assert_eq!(
            see(Some(&ignored), &s4, &seen("fp", "d.env")).status,
            ItemStatus::Ignored
        );
        // A decision about an unknown item changes nothing.
        assert!(
            decide(
                None,
                &decision(3, ItemStatus::Ignored, Some(TriageReason::WontFix), 1)
            )
            .is_none()
        );
    }

    fn arb_input() -> impl Strategy<Value = Input> {
        prop_oneof![
            (0i64..6, 0usize..3, any::<bool>()).prop_map(|(t, path, tip)| {
                let s = seen("fp", ["a", "b", "c"][path]);
                Input::Seen(
                    sighting(
                        &format!("j{t}"),
                        t * 100,
                        tip,
                        SightingPayload::SecretSeen(s.clone()),
                    ),
                    s,
                )
            }),
            (0i64..6).prop_map(|t| Input::Tip(sighting(
                &format!("j{t}"),
                t * 100,
                true,
                SightingPayload::TipScanned(TipScanned {
                    commit: None,
                    findings: 0,
                    completed_at: t * 100 + 50
                })
            ))),
            (0u128..4, 0usize..3, 0i64..6).prop_map(|(n, s, t)| {
                let (to, reason) = [
                    (ItemStatus::Resolved, Some(TriageReason::Revoked)),
                    (ItemStatus::Ignored, Some(TriageReason::UsedInTests)),
                    (ItemStatus::Open, None),
                ][s];
                // One decision id, one decision: a retried write repeats it unchanged.
                Input::Decision(decision(n, to, reason, t * 100 + 10 + n as i64))
            }),
        ]
    }

    /// Keeps the first occurrence of each decision id (the topic holds one decision per id).
    fn one_per_id(inputs: Vec<Input>) -> Vec<Input> {
        let mut ids = std::collections::HashSet::new();
        inputs
            .into_iter()
            .filter(|i| match i {
                Input::Decision(d) => ids.insert(d.decision_id),
                _ => true,
            })
            .collect()
    }

    proptest! {
        #[test]
        fn folding_any_input_twice_changes_nothing(inputs in prop::collection::vec(arb_input(), 1..30), at in 0usize..30) {
            let inputs = one_per_id(inputs);
            let at = at % inputs.len();
            let mut doubled = inputs.clone();
            doubled.insert(at + 1, inputs[at].clone());
            prop_assert_eq!(fold_all(&inputs), fold_all(&doubled));
        }

        /// Sightings keep their order (one scanner writes them in order); decisions may be read
        /// at any point between them.
        #[test]
        fn decisions_may_be_read_anywhere_between_sightings(inputs in prop::collection::vec(arb_input(), 1..30), seed in any::<u64>()) {
            let inputs = one_per_id(inputs);
            let (decisions, sightings): (Vec<Input>, Vec<Input>) = inputs.iter().cloned().partition(|i| matches!(i, Input::Decision(_)));
            // The first sighting creates the item; decisions before it are about no item.
            prop_assume!(matches!(sightings.first(), Some(Input::Seen(..))));
            let mut a = vec![sightings[0].clone()];
            a.extend(decisions.iter().cloned());
            a.extend(sightings[1..].iter().cloned());
            let mut b = vec![sightings[0].clone()];
            let mut rest: Vec<Input> = sightings[1..].to_vec();
            let mut state = seed;
            for d in decisions.iter().rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let at = (state >> 33) as usize % (rest.len() + 1);
                rest.insert(at, d.clone());
            }
            b.extend(rest);
            let (x, y) = (fold_all(&a), fold_all(&b));
            let key = |i: &InventoryItem| (i.status, i.reason, i.status_changed_at, i.reopened, i.in_tip, i.locations.clone(), i.triage.clone(), i.first_seen, i.last_seen);
            prop_assert_eq!(x.as_ref().map(key), y.as_ref().map(key));
        }
    }
}
