//! Every socket and device trick the data path uses, behind small safe
//! functions: UDP GSO/GRO and ECN on UDP sockets, batched raw sockets for
//! IP-in-IP, packet sockets on pods' veths, TUN queues with offloads, and
//! opening the underlay's sockets.

pub mod packet_socket;
pub mod raw_batch;
pub mod tun;
pub mod udp_gso;
pub mod underlay;
