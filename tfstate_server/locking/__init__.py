"""Locks on states: the interface (locker), the LockInfo format and in-process waiting."""
