//! weft's gossip control plane: a sans-I/O core (membership, records, block
//! claims, BUM and address resolution). Not built yet.
