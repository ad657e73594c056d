//! Wire types shared by the Tessera host, the wallet and the SDKs, so that what the host
//! sends and what its clients read cannot drift apart. Plain data: no I/O, no logic beyond
//! (de)serialisation.

pub mod providers;
