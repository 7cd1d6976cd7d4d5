//! Undoing a failed ADD: every step that created something registers how to remove it; unless
//! the ADD succeeds, they run in reverse order when the [`Rollback`] is dropped (also on an
//! early `?` return). Failures while undoing are logged, never hide the original error.

use wasm_cni_sdk::{log, CniError};

type Step<'a> = (String, Box<dyn FnOnce() -> Result<(), CniError> + 'a>);

#[derive(Default)]
pub struct Rollback<'a> {
    steps: Vec<Step<'a>>,
}

impl<'a> Rollback<'a> {
    pub fn new() -> Rollback<'a> {
        Rollback { steps: Vec::new() }
    }

    /// Register the undoing of something just created.
    pub fn push(&mut self, what: String, undo: impl FnOnce() -> Result<(), CniError> + 'a) {
        self.steps.push((what, Box::new(undo)));
    }

    /// The ADD succeeded: keep everything.
    pub fn disarm(mut self) {
        self.steps.clear();
    }
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        while let Some((what, undo)) = self.steps.pop() {
            if let Err(e) = undo() {
                log::warn(&format!("rollback: {what} failed: {}", e.msg));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn undoes_in_reverse_unless_disarmed() {
        let done = RefCell::new(Vec::new());
        {
            let mut r = Rollback::new();
            r.push("a".into(), || {
                done.borrow_mut().push("a");
                Ok(())
            });
            r.push("b".into(), || {
                done.borrow_mut().push("b");
                Ok(())
            });
        }
        assert_eq!(*done.borrow(), vec!["b", "a"]);
        done.borrow_mut().clear();
        let mut r = Rollback::new();
        r.push("c".into(), || {
            done.borrow_mut().push("c");
            Ok(())
        });
        r.disarm();
        assert!(done.borrow().is_empty());
    }
}
