//! Tests of `schedule.rs`.

use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::scenario::parse_yaml;

/// A scenario with the given `faults:` section (indented by two spaces).
fn scenario(faults: &str) -> Scenario {
    let text = format!(
        "name: t\nduration_s: 600\ncluster: {{nodes: 5, gcs_members: 5}}\n\
         workloads: [{{name: w, kind: http, path: /w, rate: 1}}]\nfaults:\n{faults}"
    );
    parse_yaml(&text, Path::new(".")).unwrap()
}

const RANDOM: &str = "  random:
    every_s: [10, 20]
    from_s: 30
    until_s: 500
    choices:
      - {kind: kill, target: any, heal_after_s: 10}
      - {kind: pause, target: gcs_leader, heal_after_s: 5}
      - {kind: wipe, target: gcs_member}
";

fn summary(plan: &[PlannedFault]) -> Vec<(u64, String, u64, Vec<u64>)> {
    plan.iter()
        .map(|p| (p.at_ms, p.spec.class.clone(), p.pick, p.offsets_ms.clone()))
        .collect()
}

#[test]
fn the_same_seed_gives_the_same_timeline() {
    let s = scenario(RANDOM);
    let a = timeline(&s, 42);
    assert!(a.len() > 5, "{a:?}");
    assert_eq!(a, timeline(&s, 42));
    assert_eq!(summary(&a), summary(&timeline(&s.clone(), 42)));
}

#[test]
fn different_seeds_give_different_timelines() {
    let s = scenario(RANDOM);
    let a = summary(&timeline(&s, 1));
    let b = summary(&timeline(&s, 2));
    assert_ne!(a, b);
    let times = |seed| {
        timeline(&s, seed)
            .iter()
            .map(|p| p.at_ms)
            .collect::<Vec<_>>()
    };
    assert_ne!(times(1), times(2));
}

#[test]
fn gaps_respect_every_s_and_count_from_the_heal() {
    let s = scenario(RANDOM);
    for seed in 0..50 {
        let plan = timeline(&s, seed);
        let mut free_from = 30_000;
        for p in &plan {
            let gap = p.at_ms - free_from;
            assert!((10_000..=20_000).contains(&gap), "seed {seed}: gap {gap}");
            assert!(p.at_ms <= 500_000, "seed {seed}: {} after until_s", p.at_ms);
            let heal = p.spec.heal_after_s.map_or(0, |h| (h * 1000.0) as u64);
            free_from = p.at_ms + heal;
        }
        // Stopped only because the next fault could have been too late.
        assert!(free_from + 20_000 > 500_000, "seed {seed}: stopped early");
    }
}

#[test]
fn timeline_faults_keep_their_times_and_merge_in_order() {
    let faults = "  timeline:
    - {at_s: 200, kind: kill, target: any, class: second}
    - {at_s: 100.5, kind: kill, target: any, class: first}
    - {at_s: 200, kind: pause, target: any, class: third}
";
    let plan = timeline(&scenario(faults), 9);
    let got: Vec<(u64, &str)> = plan
        .iter()
        .map(|p| (p.at_ms, p.spec.class.as_str()))
        .collect();
    assert_eq!(
        got,
        [(100_500, "first"), (200_000, "second"), (200_000, "third")]
    );

    let both = timeline(&scenario(&format!("{faults}{RANDOM}")), 9);
    assert!(both.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    let fixed: Vec<&str> = both.iter().map(|p| p.spec.class.as_str()).collect();
    assert!(["first", "second", "third"]
        .iter()
        .all(|c| fixed.contains(c)));
    // The timeline's draws come first: its picks do not depend on the
    // random part.
    let picks = |plan: &[PlannedFault]| {
        let mut picks: Vec<(String, u64)> = plan
            .iter()
            .filter(|p| ["first", "second", "third"].contains(&p.spec.class.as_str()))
            .map(|p| (p.spec.class.clone(), p.pick))
            .collect();
        picks.sort();
        picks
    };
    assert_eq!(picks(&plan), picks(&both));
}

#[test]
fn a_majority_gets_one_offset_per_member_of_it() {
    let faults = "  timeline:
    - {at_s: 1, kind: kill, target: gcs_majority, count: 1, within_ms: 300}
";
    let plan = timeline(&scenario(faults), 3);
    assert_eq!(plan[0].offsets_ms.len(), 5 / 2 + 1);
    assert_eq!(plan[0].offsets_ms[0], 0);
}

#[test]
fn offsets_fall_within_within_ms() {
    let faults = "  timeline:
    - {at_s: 1, kind: kill, target: any, count: 4, within_ms: 250}
    - {at_s: 2, kind: kill, target: any, count: 3}
    - {at_s: 3, kind: update, app: a, deployment: d}
";
    let s = scenario(faults);
    let mut spread = false;
    for seed in 0..100 {
        let plan = timeline(&s, seed);
        let offsets = &plan[0].offsets_ms;
        assert_eq!(offsets.len(), 4);
        assert_eq!(offsets[0], 0);
        assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "{offsets:?}");
        assert!(offsets.iter().all(|&o| o <= 250), "{offsets:?}");
        spread |= offsets[3] > 0;
        assert_eq!(plan[1].offsets_ms, [0, 0, 0]);
        assert_eq!(plan[2].offsets_ms, [0]);
    }
    assert!(spread, "within_ms never spread the injections");
}

#[test]
fn a_random_part_without_room_plans_nothing() {
    let faults = "  random: {every_s: [30, 40], from_s: 10, until_s: 20, \
                  choices: [{kind: kill, target: any}]}\n";
    assert_eq!(timeline(&scenario(faults), 5), []);
}

proptest! {
    #[test]
    fn schedules_are_sorted_and_within_bounds(
        seed in any::<u64>(),
        min in 1u32..30,
        extra in 0u32..30,
        from in 0u32..100,
        span in 0u32..400,
        heal in prop::option::of(1u32..20),
    ) {
        let max = min + extra;
        let until = from + span;
        let heal = heal.map_or("null".to_owned(), |h| h.to_string());
        let faults = format!(
            "  timeline:\n    - {{at_s: 50, kind: kill, target: any, count: 2, within_ms: 40, class: fixed}}\n  \
             random:\n    every_s: [{min}, {max}]\n    from_s: {from}\n    until_s: {until}\n    \
             choices:\n      - {{kind: kill, target: any, heal_after_s: {heal}}}\n      \
             - {{kind: pause, target: gcs_majority, within_ms: 100}}\n"
        );
        let s = scenario(&faults);
        let plan = timeline(&s, seed);
        prop_assert_eq!(&plan, &timeline(&s, seed));
        prop_assert!(plan.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        prop_assert_eq!(plan.iter().filter(|p| p.spec.class == "fixed").count(), 1);
        for p in &plan {
            prop_assert!(p.at_ms < 600_000);
            prop_assert_eq!(p.offsets_ms[0], 0);
            let within = p.spec.target.within_ms;
            prop_assert!(p.offsets_ms.iter().all(|&o| o <= within));
        }
        for p in plan.iter().filter(|p| p.spec.class != "fixed") {
            prop_assert!(p.at_ms >= u64::from(from + min) * 1000);
            prop_assert!(p.at_ms <= u64::from(until) * 1000);
        }
    }
}
