//! Wire types shared by the Tessera host, the wallet and the SDKs, so that what the host
//! sends and what its clients read cannot drift apart, plus the request-signing scheme both
//! sides must compute identically. Pure: no I/O.

pub mod agents;
pub mod approvals;
pub mod audit;
pub mod calls;
pub mod connect;
pub mod delegations;
pub mod grants;
pub mod identity;
pub mod policy;
pub mod problem;
pub mod providers;
pub mod scopes;
pub mod signing;
pub mod wallet;
pub mod webhooks;
pub mod whoami;
