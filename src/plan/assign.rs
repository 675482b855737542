//! Token assignment: the run-time choice, per host-resident task and step, between computing on the
//! CPU and streaming the weights to the GPU. A few comparisons per task: cheap enough for the
//! executor to call for every task of every layer.

use serde::{Deserialize, Serialize};

use super::cost::TaskCost;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    Cpu,
    Stream,
}

/// When each lane (and host DRAM) is expected to be free, in seconds from the step's start.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Backlog {
    pub cpu: f64,
    pub gpu: f64,
    pub pcie: f64,
    /// Host DRAM has drained the reads queued so far at its full bandwidth.
    pub dram: f64,
    /// The staging slot a stream would use is free.
    pub slot: f64,
}

/// Expected finish times if the task goes to the CPU or is streamed.
pub fn finish_times(c: &TaskCost, ready: f64, copy_ready: f64, b: &Backlog, dram_gbs: f64) -> (f64, f64) {
    let drain = c.host_bytes / (dram_gbs * 1e9);
    let on_cpu = (b.cpu.max(ready) + c.cpu).max(b.dram.max(ready) + drain);
    let copied = (b.pcie.max(b.slot).max(copy_ready) + c.copy).max(b.dram.max(copy_ready) + drain);
    let on_gpu = copied.max(b.gpu).max(ready) + c.gpu;
    (on_cpu, on_gpu)
}

/// Picks the route that finishes first (ties go to the CPU, which keeps the PCIe lane free for
/// what comes next) and books it in the backlog.
pub fn route(c: &TaskCost, ready: f64, copy_ready: f64, b: &mut Backlog, dram_gbs: f64) -> Route {
    let (on_cpu, on_gpu) = finish_times(c, ready, copy_ready, b, dram_gbs);
    let drain = c.host_bytes / (dram_gbs * 1e9);
    if on_cpu <= on_gpu {
        b.cpu = on_cpu;
        b.dram = b.dram.max(ready) + drain;
        Route::Cpu
    } else {
        b.pcie = b.pcie.max(b.slot).max(copy_ready) + c.copy;
        b.dram = b.dram.max(copy_ready) + drain;
        b.gpu = on_gpu;
        Route::Stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(cpu: f64, copy: f64, gpu: f64) -> TaskCost {
        TaskCost { cpu, gpu, copy, host_bytes: 1e6 }
    }

    #[test]
    fn picks_the_earlier_finish_and_books_the_lane() {
        let mut b = Backlog::default();
        // Cheap on the CPU.
        assert_eq!(route(&cost(0.001, 0.010, 0.0001), 0.0, 0.0, &mut b, 1000.0), Route::Cpu);
        assert!((b.cpu - 0.001).abs() < 1e-12);
        // A CPU already busy for 50 ms makes streaming (10 ms copy + 0.1 ms) the earlier finish.
        b.cpu = 0.050;
        assert_eq!(route(&cost(0.020, 0.010, 0.0001), 0.0, 0.0, &mut b, 1000.0), Route::Stream);
        assert!((b.pcie - 0.010).abs() < 1e-12 && (b.gpu - 0.0101).abs() < 1e-12);
    }

    #[test]
    fn shared_dram_makes_streaming_pointless_when_it_is_the_bottleneck() {
        // 1 GB each way; DRAM 10 GB/s already drained until 0.1 s by the CPU's own reads.
        let mut b = Backlog { cpu: 0.1, dram: 0.1, ..Default::default() };
        let c = TaskCost { cpu: 0.1, gpu: 0.001, copy: 0.04, host_bytes: 1e9 };
        let (on_cpu, on_gpu) = finish_times(&c, 0.0, 0.0, &b, 10.0);
        assert!((on_cpu - 0.2).abs() < 1e-12 && (on_gpu - 0.201).abs() < 1e-12);
        assert_eq!(route(&c, 0.0, 0.0, &mut b, 10.0), Route::Cpu);
    }
}
