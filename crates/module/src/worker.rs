//! A thread for a component's slow file-system work (the audit log's
//! `fdatasync`, the directory sync after an NVM write), so that the module
//! goes on computing meanwhile. Jobs run in order; the component collects
//! their outcome with [`Worker::wait`] before it relies on them, and
//! dropping the worker waits for every job.
use std::sync::mpsc;

/// One piece of work for the thread.
pub(crate) type Job = Box<dyn FnOnce() -> std::io::Result<()> + Send>;

/// The thread and the jobs given to it and not yet collected.
pub(crate) struct Worker {
    jobs: Option<mpsc::Sender<Job>>,
    /// One answer per job, in order.
    answers: mpsc::Receiver<std::io::Result<()>>,
    /// Jobs whose answer [`Self::wait`] has not collected yet.
    pub(crate) in_flight: usize,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// Starts the thread, named `name`.
    pub(crate) fn start(name: &str) -> std::io::Result<Self> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (answer, answers) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                for job in inbox {
                    if answer.send(job()).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Self {
            jobs: Some(jobs),
            answers,
            in_flight: 0,
            thread: Some(thread),
        })
    }

    /// Hands `job` to the thread ([`Self::wait`] collects its outcome); runs
    /// it here if the thread is gone.
    pub(crate) fn submit(&mut self, job: Job) -> std::io::Result<()> {
        let Some(jobs) = self.jobs.as_ref() else {
            return job();
        };
        match jobs.send(job) {
            Ok(()) => {
                self.in_flight += 1;
                Ok(())
            }
            Err(mpsc::SendError(job)) => job(),
        }
    }

    /// Waits for every job handed over; the first failure, if any.
    pub(crate) fn wait(&mut self) -> std::io::Result<()> {
        let mut result = Ok(());
        while self.in_flight > 0 {
            self.in_flight -= 1;
            let answer = self.answers.recv().unwrap_or_else(|_| {
                Err(std::io::Error::other(
                    "the module's file-system thread stopped",
                ))
            });
            if result.is_ok() {
                result = answer;
            }
        }
        result
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.wait();
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn jobs_run_in_order_and_wait_reports_the_first_failure() {
        let mut w = Worker::start("test-worker").unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        for i in 0..3 {
            let seen = Arc::clone(&seen);
            w.submit(Box::new(move || {
                seen.lock().unwrap().push(i);
                if i == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::other(format!("job {i} failed")))
                }
            }))
            .unwrap();
        }
        assert_eq!(w.in_flight, 3);
        let err = w.wait().unwrap_err();
        assert_eq!(err.to_string(), "job 1 failed");
        assert_eq!(w.in_flight, 0);
        assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2]);
        // Nothing left to collect.
        w.wait().unwrap();
    }

    #[test]
    fn dropping_the_worker_waits_for_its_jobs() {
        let done = Arc::new(Mutex::new(false));
        {
            let mut w = Worker::start("test-worker").unwrap();
            let done = Arc::clone(&done);
            w.submit(Box::new(move || {
                std::thread::sleep(std::time::Duration::from_millis(50));
                *done.lock().unwrap() = true;
                Ok(())
            }))
            .unwrap();
        }
        assert!(*done.lock().unwrap());
    }
}
