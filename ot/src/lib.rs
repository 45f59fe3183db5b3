//! Oblivious transfer for Confide: base OT over ristretto255, IKNP OT extension to random
//! OTs, and the KKRT16 batched related-key OPRF that the two-party PSI builds on.
//!
//! All protocols are semi-honest and two-party, generic over
//! [`confide_mpc::transport::Transport`] like the other protocol crates. Every secret
//! (base-OT scalars, seeds, the OPRF key `s`) is zeroized on drop and never printed.
//!
//! # Base OT ([`base`])
//!
//! The "Simplest OT" of Chou and Orlandi (LATINCRYPT 2015, ePrint 2015/267) over
//! ristretto255, with the fix for its proof pointed out by Hauck and Loss (ePrint
//! 2017/1011) and Genç, Iovino and Rial (ePrint 2017/1037): the key derivation hashes the
//! whole transcript of the OT, `k = SHA-512(DST ‖ A ‖ B_i ‖ i ‖ P)`, so keys are bound to
//! the sender's `A`, the receiver's `B_i` and the index. The sender sends `A = a·G`; for
//! choice `c_i` the receiver sends `B_i = b_i·G + c_i·A` and derives `k_{c_i}` from
//! `P = b_i·A`; the sender derives `k_0` from `a·B_i` and `k_1` from `a·(B_i − A)`.
//! What each party learns: the sender learns nothing about the choice bits (`B_i` is
//! uniform whatever `c_i`); the receiver learns `k_{c_i}`, and `k_{1−c_i}` is pseudorandom
//! to it under computational Diffie–Hellman in ristretto255 with SHA-512 modelled as a
//! random oracle. 128-bit computational security (ristretto255 offers ~126 bits).
//!
//! # OT extension ([`ext`])
//!
//! Ishai, Kilian, Nissim and Petrank (CRYPTO 2003), in the random-OT form of Asharov,
//! Lindell, Schneider and Zohner (CCS 2013): `κ = 128` base OTs with roles reversed
//! extend to any number `m` of random OTs. The extension receiver expands its base-OT
//! seed pairs with AES-128 in counter mode (a PRG, AES-NI through the `aes` crate) into
//! columns `t^i`, `g^i` and sends `u^i = t^i ⊕ g^i ⊕ c^i`; the sender, holding `s` and the
//! seeds `k_i^{s_i}`, gets rows `q_j = t_j ⊕ (c_j ∧ s)`. Rows are hashed with a
//! correlation-robust hash `H(j, ·)` (SHA-256 with the row index and a domain tag; its
//! first 128 bits) to break the correlation. For random OT the code word is the repetition
//! code `c_j = r_j·1^κ`; the sender outputs `H(j, q_j)` and `H(j, q_j ⊕ s)` and the
//! receiver `H(j, t_j)`, equal to the one of its choice `r_j`. The sender learns nothing
//! about the choices (every `u^i` is masked by a PRG output it cannot compute); the
//! receiver learns only the chosen message (the other needs `s`, 128 bits of which it
//! knows nothing). The matrix is processed in chunks of [`ext::CHUNK_ROWS`] rows: one
//! message per chunk, memory bounded by the chunk, the bit-matrix transpose done by
//! 128×128 tiles in registers.
//!
//! # KKRT16 OPRF ([`oprf`])
//!
//! Kolesnikov, Kumaresan, Rosulek and Trieu, "Efficient Batched Oblivious PRF with
//! Applications to Private Set Intersection" (CCS 2016, ePrint 2016/799): the same
//! extension with a code word of width `w = 512` bits, `c_j = C(x_j)` for a pseudorandom
//! code `C(x) = AES_{k_0}(x) ‖ … ‖ AES_{k_3}(x)` with four AES-128 keys drawn by the OPRF
//! key holder and sent in the clear. Instance `j` realises the PRF
//! `F_j(x) = H(j, q_j ⊕ (C(x) ∧ s))`: the receiver learns `F_j(x_j) = H(j, t_j)` for its
//! one input per instance and nothing else; the key holder learns nothing about the
//! `x_j`. Security needs the Hamming distance of `C(x) ⊕ C(x')` to be at least `κ = 128`
//! for every pair of inputs the receiver might use; for a pseudorandom code of width 512,
//! the distance of two random 512-bit words is below 128 with probability < 2^-100 per
//! pair (Chernoff), which covers the ≤ 2^40 pairs of any realistic job — KKRT16 (§5,
//! Table 2) finds `w = 424…448` enough for 128-bit security at up to 2^24 instances, and
//! libOTe/libPSI use 512. Inputs are 128-bit (the PSI layer maps IDs to 128 bits with a
//! domain-separated SHA-256; collisions among 2^32 IDs occur with probability < 2^-64).
//!
//! # Statistical security
//!
//! The PSI built on this (in `confide-psi`) sizes its tags to `λ + log2(n1·n2)` bits with
//! `λ = 40`, and its stash-less cuckoo table to fail with probability < 2^-40; see there.
#![forbid(unsafe_code)]

pub mod base;
pub mod block;
pub mod ext;
pub mod oprf;

use confide_mpc::transport::TransportError;

/// Errors of the OT protocols.
#[derive(Debug, thiserror::Error)]
pub enum OtError {
    /// The link to the peer failed or a message could not be read.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The peer sent a value that is not a valid group element, or the identity.
    #[error("peer `{0}` sent an invalid group element")]
    BadPoint(String),
    /// The parameters of a call are unusable (for example zero instances where some are
    /// needed); the text says which.
    #[error("invalid OT parameters: {0}")]
    Params(String),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, OtError>;

/// Two ends of an in-memory link for the protocol tests: (`s`, `r`).
#[cfg(test)]
pub(crate) fn test_pair() -> (
    confide_mpc::transport::ChannelTransport,
    confide_mpc::transport::ChannelTransport,
) {
    let mut mesh = confide_mpc::transport::memory_mesh(&["s", "r"], 4);
    let r = mesh.pop().expect("two ends");
    let s = mesh.pop().expect("two ends");
    (s, r)
}
