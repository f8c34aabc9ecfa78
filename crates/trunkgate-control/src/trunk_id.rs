//! Stable trunk and account identity: a [`TrunkId`] per trunk name and an [`AccountId`] per
//! account name, assigned once by [`TrunkIds`] and never reused or changed, so counters,
//! health and drills keyed by id survive a policy that reorders, removes or adds trunks or
//! accounts.

use std::collections::HashMap;
use std::fmt;

/// A trunk's stable id. On a fresh start ids follow policy order (0, 1, 2, …); a later
/// policy keeps each known name's id and gives new names new ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrunkId(pub u16);

impl fmt::Display for TrunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl serde::Serialize for TrunkId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.0)
    }
}

/// A provider account's stable id (`[[account]]`), dense like [`TrunkId`]s and kept by
/// name across policies in the same [`TrunkIds`] registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(pub u16);

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl serde::Serialize for AccountId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.0)
    }
}

/// The registry of trunk ids (and account ids) by name. Grows only: a name keeps its id for
/// the life of the process, and an id is never given to another name. Trunk and account
/// names are separate namespaces.
#[derive(Debug, Clone, Default)]
pub struct TrunkIds {
    by_name: HashMap<String, TrunkId>,
    /// `names[id]`: the name of id `id` (dense: ids are handed out in sequence).
    names: Vec<String>,
    /// Account ids, the same way.
    accounts: HashMap<String, AccountId>,
    account_names: Vec<String>,
}

impl TrunkIds {
    /// The id of `name`, assigning the next free one if it has none. `None` only when all
    /// 65,536 ids are taken (by that many distinct names over the process's life).
    pub fn assign(&mut self, name: &str) -> Option<TrunkId> {
        if let Some(&id) = self.by_name.get(name) {
            return Some(id);
        }
        let id = TrunkId(u16::try_from(self.names.len()).ok()?);
        self.by_name.insert(name.to_owned(), id);
        self.names.push(name.to_owned());
        Some(id)
    }

    pub fn get(&self, name: &str) -> Option<TrunkId> {
        self.by_name.get(name).copied()
    }

    pub fn name(&self, id: TrunkId) -> Option<&str> {
        self.names.get(usize::from(id.0)).map(String::as_str)
    }

    /// Ids handed out so far (one past the highest id).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The id of account `name`, assigning the next free one if it has none (`None` when
    /// all 65,536 are taken).
    pub fn assign_account(&mut self, name: &str) -> Option<AccountId> {
        if let Some(&id) = self.accounts.get(name) {
            return Some(id);
        }
        let id = AccountId(u16::try_from(self.account_names.len()).ok()?);
        self.accounts.insert(name.to_owned(), id);
        self.account_names.push(name.to_owned());
        Some(id)
    }

    pub fn account(&self, name: &str) -> Option<AccountId> {
        self.accounts.get(name).copied()
    }

    pub fn account_name(&self, id: AccountId) -> Option<&str> {
        self.account_names
            .get(usize::from(id.0))
            .map(String::as_str)
    }

    /// Account ids handed out so far (one past the highest id).
    pub fn accounts_len(&self) -> usize {
        self.account_names.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_first_sight_and_never_change() {
        let mut ids = TrunkIds::default();
        assert_eq!(ids.assign("a"), Some(TrunkId(0)));
        assert_eq!(ids.assign("b"), Some(TrunkId(1)));
        assert_eq!(ids.assign("a"), Some(TrunkId(0)));
        assert_eq!(ids.assign("c"), Some(TrunkId(2)));
        assert_eq!(ids.get("b"), Some(TrunkId(1)));
        assert_eq!(ids.get("zz"), None);
        assert_eq!(ids.name(TrunkId(2)), Some("c"));
        assert_eq!(ids.name(TrunkId(3)), None);
        assert_eq!(ids.len(), 3);
        assert_eq!(TrunkId(7).to_string(), "7");
    }

    #[test]
    fn account_ids_are_their_own_namespace_and_never_change() {
        let mut ids = TrunkIds::default();
        assert_eq!(ids.assign("acme"), Some(TrunkId(0)));
        assert_eq!(ids.assign_account("acme"), Some(AccountId(0)));
        assert_eq!(ids.assign_account("globex"), Some(AccountId(1)));
        assert_eq!(ids.assign_account("acme"), Some(AccountId(0)));
        assert_eq!(ids.account("globex"), Some(AccountId(1)));
        assert_eq!(ids.account_name(AccountId(1)), Some("globex"));
        assert_eq!(ids.account_name(AccountId(2)), None);
        assert_eq!((ids.len(), ids.accounts_len()), (1, 2));
    }
}
