//! The domains that exist, by id.

use super::Domain;
use alloc::sync::Arc;
use alloc::vec::Vec;
use spin::Mutex;

static DOMAINS: Mutex<Vec<Arc<Domain>>> = Mutex::new(Vec::new());

pub fn find(domid: u16) -> Option<Arc<Domain>> {
    DOMAINS.lock().iter().find(|d| d.id == domid).cloned()
}

pub fn all() -> Vec<Arc<Domain>> {
    DOMAINS.lock().clone()
}

pub fn count() -> usize {
    DOMAINS.lock().len()
}

/// Domain `id`: `me` when that is its own id (no search), else the domain
/// found by id. Ids arrive resolved: DOMID_SELF means nothing here.
pub fn get(me: &Arc<Domain>, id: u16) -> Option<Arc<Domain>> {
    if id == me.id { Some(me.clone()) } else { find(id) }
}

/// Adds a built domain.
pub fn insert(dom: Arc<Domain>) {
    DOMAINS.lock().push(dom);
}

/// Removes a destroyed domain.
pub fn remove(id: u16) {
    DOMAINS.lock().retain(|d| d.id != id);
}
