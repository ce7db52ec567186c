// SPDX-License-Identifier: MIT
pragma solidity ^0.8.10;

/// A mintable ERC-20 whose name() and symbol() return bytes32, as MKR's do on Ethereum
/// (DSToken). The test markets list one to check that the lending fuse reads such tokens.
contract Bytes32SymbolToken {
  bytes32 public name;
  bytes32 public symbol;
  uint8 public decimals;
  uint256 public totalSupply;
  mapping(address => uint256) public balanceOf;
  mapping(address => mapping(address => uint256)) public allowance;

  event Transfer(address indexed from, address indexed to, uint256 value);
  event Approval(address indexed owner, address indexed spender, uint256 value);

  constructor(string memory name_, string memory symbol_, uint8 decimals_) {
    name = bytes32(bytes(name_));
    symbol = bytes32(bytes(symbol_));
    decimals = decimals_;
  }

  function mint(address to, uint256 value) external returns (bool) {
    totalSupply += value;
    balanceOf[to] += value;
    emit Transfer(address(0), to, value);
    return true;
  }

  function approve(address spender, uint256 value) external returns (bool) {
    allowance[msg.sender][spender] = value;
    emit Approval(msg.sender, spender, value);
    return true;
  }

  function transfer(address to, uint256 value) external returns (bool) {
    return transferFrom(msg.sender, to, value);
  }

  function transferFrom(address from, address to, uint256 value) public returns (bool) {
    if (from != msg.sender && allowance[from][msg.sender] != type(uint256).max) {
      require(allowance[from][msg.sender] >= value, 'insufficient allowance');
      allowance[from][msg.sender] -= value;
    }
    require(balanceOf[from] >= value, 'insufficient balance');
    balanceOf[from] -= value;
    balanceOf[to] += value;
    emit Transfer(from, to, value);
    return true;
  }
}
