//! Lanes: one worker thread each (CPU compute, GPU compute, H2D copies) with a FIFO queue; an
//! operation waits for its fences (the events of the operations it depends on) with a blocking
//! wait, runs, and signals its own event. A failed operation's error travels to every operation
//! that depends on it, which then does not run.

use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{Scope, ScopedJoinHandle};

use super::ExecError;
use crate::plan::simulate::{Lane, LANES};

/// Completion of one operation: pending, done, or failed with a message.
#[derive(Default)]
pub struct Event {
    state: Mutex<Option<Result<(), String>>>,
    cv: Condvar,
}

impl Event {
    pub fn signal(&self, result: Result<(), String>) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *s = Some(result);
        self.cv.notify_all();
    }

    /// Blocks (no spinning) until the operation has ended.
    pub fn wait(&self) -> Result<(), String> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(r) = &*s {
                return r.clone();
            }
            s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

type Work<'env> = Box<dyn FnOnce() -> Result<(), ExecError> + Send + 'env>;

struct Job<'env> {
    fences: Vec<Arc<Event>>,
    work: Work<'env>,
    done: Arc<Event>,
}

/// The three lanes of one step, running inside a thread scope.
pub struct Lanes<'scope, 'env> {
    queues: Vec<Sender<Job<'env>>>,
    workers: Vec<ScopedJoinHandle<'scope, ()>>,
}

impl<'scope, 'env> Lanes<'scope, 'env> {
    pub fn start(scope: &'scope Scope<'scope, 'env>) -> Result<Lanes<'scope, 'env>, ExecError> {
        let mut queues = Vec::new();
        let mut workers = Vec::new();
        for lane in LANES {
            let (tx, rx) = channel::<Job<'env>>();
            queues.push(tx);
            let worker = std::thread::Builder::new().name(format!("lane-{}", lane.name())).spawn_scoped(
                scope,
                move || {
                    for job in rx {
                        let fenced: Result<(), String> = job.fences.iter().try_for_each(|f| f.wait());
                        let result = fenced.and_then(|()| (job.work)().map_err(|e| e.to_string()));
                        job.done.signal(result);
                    }
                },
            );
            workers.push(
                worker
                    .map_err(|e| ExecError::Device(format!("cannot start the {} lane: {e}", lane.name())))?,
            );
        }
        Ok(Lanes { queues, workers })
    }

    /// Queue `work` on `lane` behind `fences`; returns its event.
    pub fn submit(&self, lane: Lane, fences: Vec<Arc<Event>>, work: Work<'env>) -> Arc<Event> {
        let done = Arc::new(Event::default());
        let job = Job { fences, work, done: done.clone() };
        if let Err(e) = self.queues[lane.index()].send(job) {
            e.0.done.signal(Err(format!("lane {} has stopped", lane.name())));
        }
        done
    }

    /// Close the queues and wait for the workers to drain them.
    pub fn finish(self) {
        drop(self.queues);
        for w in self.workers {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn fences_order_work_across_lanes_and_errors_propagate() {
        let order = Mutex::new(Vec::new());
        let counter = AtomicUsize::new(0);
        std::thread::scope(|s| {
            let lanes = Lanes::start(s).unwrap();
            let (order, counter) = (&order, &counter);
            // The GPU op waits for a slow CPU op; the copy waits for the GPU op.
            let a = lanes.submit(
                Lane::Cpu,
                vec![],
                Box::new(move || {
                    std::thread::sleep(std::time::Duration::from_millis(30));
                    order.lock().unwrap().push("cpu");
                    Ok(())
                }),
            );
            let b = lanes.submit(
                Lane::Gpu,
                vec![a.clone()],
                Box::new(move || {
                    order.lock().unwrap().push("gpu");
                    Err(ExecError::Device("boom".into()))
                }),
            );
            let c = lanes.submit(
                Lane::Pcie,
                vec![b.clone()],
                Box::new(move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }),
            );
            assert!(a.wait().is_ok());
            assert_eq!(b.wait().unwrap_err(), "device: boom");
            assert_eq!(c.wait().unwrap_err(), "device: boom");
            lanes.finish();
        });
        assert_eq!(*order.lock().unwrap(), vec!["cpu", "gpu"]);
        assert_eq!(counter.load(Ordering::SeqCst), 0, "a job behind a failed fence must not run");
    }
}
