//! Two tiny tc classifier programs, assembled here and loaded with
//! bpf(2): push an 802.1Q tag on every frame, and pop a given tag (dropping
//! frames without it). They are what a segment's VLAN tag is made of on
//! kernels without bridge VLAN filtering, 8021q or tc's `vlan` action — only
//! the BPF classifier, which tweed's kernels all have.
//!
//! The programs are a handful of instructions, so they are written out as
//! eBPF instructions rather than compiled from C: no BPF toolchain, no
//! object files, nothing to load from disk.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use crate::error::{NetlinkError, Result};

/// `BPF_PROG_LOAD`.
const BPF_PROG_LOAD: libc::c_long = 5;
/// `BPF_PROG_TYPE_SCHED_CLS`: a tc classifier.
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
/// Helper numbers (`enum bpf_func_id`).
const HELPER_SKB_VLAN_PUSH: i32 = 18;
const HELPER_SKB_VLAN_POP: i32 = 19;
/// Offsets in `struct __sk_buff`.
const SKB_VLAN_PRESENT: i16 = 20;
const SKB_VLAN_TCI: i16 = 24;
/// tc verdicts (direct action).
const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    /// dst register in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

// The few opcodes used below.
const MOV64_IMM: u8 = 0xb7; // dst = imm
const MOV64_REG: u8 = 0xbf; // dst = src
const AND64_IMM: u8 = 0x57; // dst &= imm
const LDX_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const JEQ_IMM: u8 = 0x15; // if dst == imm goto +off
const JNE_IMM: u8 = 0x55; // if dst != imm goto +off
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;

/// `skb_vlan_push(skb, htons(ETH_P_8021Q), vid); return TC_ACT_OK;`
fn push_program(vid: u16) -> Vec<Insn> {
    vec![
        // r1 is the skb already.
        insn(MOV64_IMM, 2, 0, 0, i32::from(0x8100u16.to_be())),
        insn(MOV64_IMM, 3, 0, 0, i32::from(vid)),
        insn(CALL, 0, 0, 0, HELPER_SKB_VLAN_PUSH),
        insn(MOV64_IMM, 0, 0, 0, TC_ACT_OK),
        insn(EXIT, 0, 0, 0, 0),
    ]
}

/// `if (!skb->vlan_present || (skb->vlan_tci & 0xfff) != vid) return
/// TC_ACT_SHOT; skb_vlan_pop(skb); return TC_ACT_OK;` — the receive path
/// has already moved the tag into the skb's metadata when tc sees it.
fn pop_program(vid: u16) -> Vec<Insn> {
    vec![
        insn(MOV64_REG, 6, 1, 0, 0),
        insn(LDX_W, 2, 6, SKB_VLAN_PRESENT, 0),
        insn(JEQ_IMM, 2, 0, 6, 0), // → drop
        insn(LDX_W, 2, 6, SKB_VLAN_TCI, 0),
        insn(AND64_IMM, 2, 0, 0, 0xfff),
        insn(JNE_IMM, 2, 0, 3, i32::from(vid)), // → drop
        insn(MOV64_REG, 1, 6, 0, 0),
        insn(CALL, 0, 0, 0, HELPER_SKB_VLAN_POP),
        insn(JEQ_IMM, 0, 0, 2, 0), // popped → ok
        // drop:
        insn(MOV64_IMM, 0, 0, 0, TC_ACT_SHOT),
        insn(EXIT, 0, 0, 0, 0),
        // ok:
        insn(MOV64_IMM, 0, 0, 0, TC_ACT_OK),
        insn(EXIT, 0, 0, 0, 0),
    ]
}

/// The leading part of `union bpf_attr` for `BPF_PROG_LOAD`; the kernel
/// takes a shorter attribute as long as what it leaves out would be zero.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// The program that tags every frame with `vid` (for a device's egress).
pub fn load_vlan_push(vid: u16) -> Result<OwnedFd> {
    load(&push_program(vid), &format!("tw_vpush_{vid}"))
}

/// The program that keeps only frames tagged `vid`, untagged (for a
/// device's ingress).
pub fn load_vlan_pop(vid: u16) -> Result<OwnedFd> {
    load(&pop_program(vid), &format!("tw_vpop_{vid}"))
}

fn load(program: &[Insn], name: &str) -> Result<OwnedFd> {
    // The helpers used are not GPL-only; the licence only gates those.
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 4096];
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_SCHED_CLS,
        insn_cnt: program.len() as u32,
        insns: program.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        ..Default::default()
    };
    let n = name.len().min(15);
    attr.prog_name[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: `attr` is a valid, fully initialised prefix of bpf_attr for
    // BPF_PROG_LOAD and its size is passed; the pointers in it (program,
    // licence, log buffer) stay valid for the duration of the call, and the
    // log buffer is writable for `log_size` bytes.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &mut attr as *mut ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if fd < 0 {
        let source = io::Error::last_os_error();
        let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
        return Err(NetlinkError::BpfLoad {
            name: name.to_string(),
            source,
            log: String::from_utf8_lossy(&log[..end]).trim().to_string(),
        });
    }
    // SAFETY: the kernel returned a new file descriptor that nothing else
    // owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_well_formed() {
        // Every jump lands inside the program, and both end in exit.
        for p in [push_program(100), pop_program(4094)] {
            assert_eq!(p.last().unwrap().code, EXIT);
            for (i, ins) in p.iter().enumerate() {
                if ins.code == JEQ_IMM || ins.code == JNE_IMM {
                    let target = i as i64 + 1 + i64::from(ins.off);
                    assert!((0..p.len() as i64).contains(&target), "jump at {i}");
                }
            }
        }
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }
}
