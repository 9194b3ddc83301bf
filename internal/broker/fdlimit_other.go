//go:build !unix

package broker

// raiseOpenFiles: no open-files limit to read here (0).
func raiseOpenFiles() (uint64, error) { return 0, nil }
