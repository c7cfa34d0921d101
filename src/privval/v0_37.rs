//! CometBFT v0.37 privval messages (tendermint-proto `v0_37`), mapped to and
//! from the version-neutral form. Votes carry no extension fields.

super::wire::tendermint_codec!(v0_37);
