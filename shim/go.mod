module sriovkit/shim

// Standard library only, so the image can build it with Debian's golang-1.23 from
// bookworm-backports and CI with whatever Go the machine has.
go 1.21
