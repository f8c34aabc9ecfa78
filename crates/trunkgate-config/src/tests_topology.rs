//! `topology_hiding` of a `[[trunk]]`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::Policy;
use crate::tests::{BASE, assert_refused};

#[test]
fn topology_hiding_is_off_unless_written() {
    let p = Policy::from_toml(BASE, "t.toml").unwrap();
    assert!(!p.trunks[0].topology_hiding);
    let src = format!("{BASE}topology_hiding = true\n");
    let p = Policy::from_toml(&src, "t.toml").unwrap();
    assert!(p.trunks[0].topology_hiding);
}

#[test]
fn topology_hiding_must_be_a_boolean() {
    let src = format!("{BASE}topology_hiding = \"yes\"\n");
    assert_refused(&src, 11, 19, "topology_hiding");
}

#[test]
fn topology_hiding_needs_anchored_media() {
    let src = format!("{BASE}media = {{ anchor = false }}\ntopology_hiding = true\n");
    let errors = assert_refused(&src, 12, 19, "anchor = false");
    assert!(errors.to_string().contains("c= and o="), "{errors}");
}
