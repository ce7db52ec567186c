"""What every web3 fuse shares: the transaction manager, revert decoding, keys, a local anvil node."""

from fuses.evm.revert import RevertCode, decode_revert
from fuses.evm.txmanager import TxManager, TxResult, TxSettings

__all__ = ["RevertCode", "TxManager", "TxResult", "TxSettings", "decode_revert"]
