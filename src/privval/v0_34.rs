//! CometBFT v0.34 privval messages (tendermint-proto `v0_34`), mapped to and
//! from the version-neutral form. Votes carry no extension fields.

super::wire::tendermint_codec!(v0_34);
