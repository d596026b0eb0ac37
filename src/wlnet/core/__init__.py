"""The core: the Net protocol, port types, user data and tensors, compiled modules, option checks, errors, symbols."""
