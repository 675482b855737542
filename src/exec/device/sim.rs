//! The simulated GPU: device memory is host memory of its own (resident weights are copies, not
//! views of the model file), allocations go through a ledger with the card's budget (past it is an
//! out-of-memory error, as on a card), tasks run with the CPU kernels on the GPU lane's thread (so
//! tokens equal the CPU path's), and every staging slot holds NaN from the moment its reader ends
//! until the copy that fills it has completed: a missing wait shows as an error or wrong tokens,
//! never as luck. Its time is virtual: the executor times what it ran with the cost model.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use half::{bf16, f16};

use super::{Device, WeightsAt};
use crate::cpu::WeightView;
use crate::exec::binding::view_bytes;
use crate::exec::tasks::{StepState, TaskRef};
use crate::exec::ExecError;
use crate::gpu::MemLedger;
use crate::ops::matmul::Linear;

/// A matrix in device memory.
enum DeviceMatrix {
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
}

impl DeviceMatrix {
    fn copy_of(w: &WeightView<'_>) -> DeviceMatrix {
        match w {
            WeightView::F32(s) => DeviceMatrix::F32(s.to_vec()),
            WeightView::F16(s) => DeviceMatrix::F16(s.to_vec()),
            WeightView::BF16(s) => DeviceMatrix::BF16(s.to_vec()),
        }
    }

    fn view(&self) -> WeightView<'_> {
        match self {
            DeviceMatrix::F32(v) => WeightView::F32(v),
            DeviceMatrix::F16(v) => WeightView::F16(v),
            DeviceMatrix::BF16(v) => WeightView::BF16(v),
        }
    }
}

/// Where one matrix lies in a slot: first word, element count, element type.
type Placed = (usize, usize, Elem);

/// A staging slot: raw words, poisoned (all bits set: NaN in f32, f16 and bf16) while empty.
struct Slot {
    words: Vec<u32>,
    /// The task whose matrices it holds, and where each lies.
    filled: Option<(usize, Vec<Placed>)>,
}

#[derive(Clone, Copy)]
enum Elem {
    F32,
    F16,
    BF16,
}

const POISON: u32 = u32::MAX;

pub struct SimDevice {
    name: String,
    ledger: MemLedger,
    resident: RwLock<HashMap<usize, Vec<DeviceMatrix>>>,
    slots: RwLock<Vec<Mutex<Slot>>>,
}

impl SimDevice {
    /// A simulated card of `budget` bytes, described as `name` (the hardware profile it plays).
    pub fn new(name: &str, budget: u64) -> SimDevice {
        SimDevice {
            name: name.to_string(),
            ledger: MemLedger::new(budget),
            resident: RwLock::new(HashMap::new()),
            slots: RwLock::new(Vec::new()),
        }
    }

    fn reserve_bytes(&self, what: &str, bytes: u64) -> Result<(), ExecError> {
        self.ledger.reserve(bytes).map_err(|_| {
            ExecError::Device(format!(
                "out of memory: {what} needs {bytes} bytes, {} of {} in use",
                self.ledger.used(),
                self.ledger.limit()
            ))
        })
    }
}

fn poisoned<T>(r: std::sync::LockResult<T>) -> T {
    r.unwrap_or_else(|e| e.into_inner())
}

/// Views into a filled slot's words, with the host matrices' shapes and biases.
fn slot_mats<'a>(slot: &'a Slot, host: &[Linear<'a>]) -> Vec<Linear<'a>> {
    let Some((_, layout)) = &slot.filled else { return Vec::new() };
    layout
        .iter()
        .zip(host)
        .map(|(&(first, n, elem), h)| {
            let words = &slot.words[first..];
            // SAFETY: `fill_slot` wrote `n` elements of type `elem` from word `first`, inside the
            // slot (checked there); u32 words are aligned for f32, f16 and bf16.
            let w = unsafe {
                match elem {
                    Elem::F32 => WeightView::F32(std::slice::from_raw_parts(words.as_ptr().cast(), n)),
                    Elem::F16 => WeightView::F16(std::slice::from_raw_parts(words.as_ptr().cast(), n)),
                    Elem::BF16 => WeightView::BF16(std::slice::from_raw_parts(words.as_ptr().cast(), n)),
                }
            };
            Linear { w, ..*h }
        })
        .collect()
}

impl Device for SimDevice {
    fn describe(&self) -> String {
        format!(
            "simulated GPU ({}), {:.2} GiB budget; runs its tasks with the CPU kernels, times them with the cost model",
            self.name,
            self.ledger.limit() as f64 / (1u64 << 30) as f64
        )
    }

    fn kind(&self) -> &'static str {
        "sim"
    }

    fn budget(&self) -> u64 {
        self.ledger.limit()
    }

    fn used(&self) -> u64 {
        self.ledger.used()
    }

    fn reset(&self) {
        poisoned(self.resident.write()).clear();
        poisoned(self.slots.write()).clear();
        self.ledger.release(self.ledger.used());
    }

    fn reserve(&self, what: &str, bytes: u64) -> Result<(), ExecError> {
        self.reserve_bytes(what, bytes)
    }

    fn upload_resident(&self, id: usize, mats: &[Linear<'_>]) -> Result<(), ExecError> {
        let bytes: u64 = mats.iter().map(|l| view_bytes(&l.w)).sum();
        self.reserve_bytes(&format!("task {id}'s weights"), bytes)?;
        let copies = mats.iter().map(|l| DeviceMatrix::copy_of(&l.w)).collect();
        poisoned(self.resident.write()).insert(id, copies);
        Ok(())
    }

    fn evict(&self, id: usize) {
        if let Some(copies) = poisoned(self.resident.write()).remove(&id) {
            let bytes: u64 = copies.iter().map(|c| view_bytes(&c.view())).sum();
            self.ledger.release(bytes);
        }
    }

    fn create_slots(&self, n: u32, bytes: u64) -> Result<(), ExecError> {
        self.reserve_bytes(&format!("{n} staging slots"), u64::from(n) * bytes)?;
        let words = bytes.div_ceil(4) as usize;
        let mut slots = poisoned(self.slots.write());
        *slots = (0..n).map(|_| Mutex::new(Slot { words: vec![POISON; words], filled: None })).collect();
        Ok(())
    }

    fn fill_slot(&self, slot: u32, id: usize, mats: &[Linear<'_>]) -> Result<(), ExecError> {
        let slots = poisoned(self.slots.read());
        let s =
            slots.get(slot as usize).ok_or_else(|| ExecError::Device(format!("no staging slot {slot}")))?;
        let mut s = poisoned(s.lock());
        if let Some((holder, _)) = &s.filled {
            return Err(ExecError::Device(format!(
                "staging slot {slot} refilled with task {id} while task {holder} still holds it"
            )));
        }
        let mut layout = Vec::with_capacity(mats.len());
        let mut at = 0usize;
        for l in mats {
            let (elem, n, bytes): (Elem, usize, &[u8]) = match l.w {
                WeightView::F32(v) => (Elem::F32, v.len(), bytemuck_bytes(v)),
                WeightView::F16(v) => (Elem::F16, v.len(), bytemuck_bytes(v)),
                WeightView::BF16(v) => (Elem::BF16, v.len(), bytemuck_bytes(v)),
            };
            let words = bytes.len().div_ceil(4);
            if at + words > s.words.len() {
                return Err(ExecError::Device(format!(
                    "task {id} does not fit staging slot {slot} ({} bytes)",
                    4 * s.words.len()
                )));
            }
            // SAFETY: the destination words are inside the slot (checked above) and do not
            // overlap the source, which is host memory.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    s.words[at..].as_mut_ptr().cast::<u8>(),
                    bytes.len(),
                );
            }
            layout.push((at, n, elem));
            at += words;
        }
        s.filled = Some((id, layout));
        Ok(())
    }

    fn release_slot(&self, slot: u32) {
        let slots = poisoned(self.slots.read());
        if let Some(s) = slots.get(slot as usize) {
            let mut s = poisoned(s.lock());
            s.words.fill(POISON);
            s.filled = None;
        }
    }

    fn run(
        &self,
        id: usize,
        task: TaskRef,
        host_mats: &[Linear<'_>],
        at: WeightsAt,
        st: &StepState<'_>,
    ) -> Result<(), ExecError> {
        match at {
            WeightsAt::Resident => {
                let resident = poisoned(self.resident.read());
                let copies = resident.get(&id).ok_or_else(|| {
                    ExecError::Device(format!("task {id} runs on the GPU but is not resident"))
                })?;
                let mats: Vec<Linear<'_>> =
                    copies.iter().zip(host_mats).map(|(c, h)| Linear { w: c.view(), ..*h }).collect();
                st.run(task, &mats);
            }
            WeightsAt::Slot(slot) => {
                let slots = poisoned(self.slots.read());
                let s = slots
                    .get(slot as usize)
                    .ok_or_else(|| ExecError::Device(format!("no staging slot {slot}")))?;
                let s = poisoned(s.lock());
                match &s.filled {
                    Some((holder, _)) if *holder == id => {}
                    other => {
                        return Err(ExecError::Device(format!(
                            "task {id} read staging slot {slot} before its copy landed (slot holds {:?})",
                            other.as_ref().map(|(h, _)| *h)
                        )))
                    }
                }
                st.run(task, &slot_mats(&s, host_mats));
            }
        }
        Ok(())
    }
}

/// The bytes of a slice of plain numbers.
fn bytemuck_bytes<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: f32, f16 and bf16 have no padding and every byte pattern is a valid u8.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lin(w: &[f16], n_in: usize) -> Linear<'_> {
        Linear { w: WeightView::F16(w), n_in, n_out: w.len() / n_in, bias: None, lora: &[] }
    }

    #[test]
    fn slots_are_nan_until_filled_and_refuse_a_second_holder() {
        let dev = SimDevice::new("test", 1 << 20);
        dev.create_slots(2, 64).unwrap();
        let host: Vec<f16> = (0..8).map(|i| f16::from_f32(i as f32 + 0.5)).collect();
        let h = [lin(&host, 4)];
        {
            let slots = dev.slots.read().unwrap();
            let s = slots[1].lock().unwrap();
            let f = f16::from_bits(s.words[0] as u16);
            assert!(f.is_nan() && f32::from_bits(s.words[3]).is_nan());
        }
        dev.fill_slot(1, 7, &h).unwrap();
        {
            let slots = dev.slots.read().unwrap();
            let s = slots[1].lock().unwrap();
            let m = slot_mats(&s, &h);
            let WeightView::F16(v) = m[0].w else { panic!("type changed") };
            assert_eq!(v, &host[..]);
        }
        assert!(dev.fill_slot(1, 8, &h).is_err(), "a held slot must not be refilled");
        dev.release_slot(1);
        dev.fill_slot(1, 8, &h).unwrap();
    }

    #[test]
    fn the_budget_is_enforced() {
        let dev = SimDevice::new("test", 1000);
        let w = vec![f16::ONE; 400];
        dev.upload_resident(0, &[lin(&w, 4)]).unwrap();
        assert_eq!(dev.used(), 800);
        let err = dev.upload_resident(1, &[lin(&w, 4)]).unwrap_err().to_string();
        assert!(err.contains("out of memory"), "{err}");
        assert_eq!(dev.used(), 800);
        assert!(dev.create_slots(1, 300).is_err());
    }
}
