//! Catches panics raised anywhere in a simulation (a caller, the pool's
//! upkeep task, a host), which tokio would otherwise swallow into join
//! handles: the driver's checking mode reports an invariant violation by
//! panicking, and a run must not miss one.

use std::cell::RefCell;
use std::sync::Once;

thread_local! {
    /// While a capture runs on this thread: the panic messages seen so far.
    static CAUGHT: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

static INSTALL: Once = Once::new();

/// Records every panic on the current thread from [`Capture::start`] to
/// [`Capture::finish`] (turmoil runs all hosts on the thread that steps the
/// simulation). Panics on other threads, or outside a capture, go to the
/// previous panic hook as usual.
pub(crate) struct Capture(());

impl Capture {
    /// Starts recording this thread's panics.
    pub(crate) fn start() -> Capture {
        INSTALL.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let recorded = CAUGHT.with(|caught| {
                    let mut caught = caught.borrow_mut();
                    match caught.as_mut() {
                        Some(messages) => {
                            let location = info
                                .location()
                                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                                .unwrap_or_default();
                            messages.push(format!("panic{location}: {}", message(info)));
                            true
                        }
                        None => false,
                    }
                });
                if !recorded {
                    previous(info);
                }
            }));
        });
        CAUGHT.with(|caught| *caught.borrow_mut() = Some(Vec::new()));
        Capture(())
    }

    /// Stops recording and returns the panic messages seen.
    pub(crate) fn finish(self) -> Vec<String> {
        CAUGHT.with(|caught| caught.borrow_mut().take().unwrap_or_default())
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        CAUGHT.with(|caught| caught.borrow_mut().take());
    }
}

fn message(info: &std::panic::PanicHookInfo<'_>) -> String {
    if let Some(s) = info.payload().downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = info.payload().downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}
