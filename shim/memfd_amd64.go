package main

const sysMemfdCreate = 319 // not in package syscall's amd64 table
