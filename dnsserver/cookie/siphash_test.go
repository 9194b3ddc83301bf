package cookie

import "testing"

// The reference vectors of the SipHash paper (key 00..0f, message
// 00..len-1), for lengths that cover an empty message, a partial block,
// exactly one block and one block plus a partial one.
func TestSipHash24(t *testing.T) {
	var k [16]byte
	for i := range k {
		k[i] = byte(i)
	}
	msg := make([]byte, 64)
	for i := range msg {
		msg[i] = byte(i)
	}
	for _, c := range []struct {
		n    int
		want uint64
	}{
		{0, 0x726fdb47dd0e0e31},
		{1, 0x74f839c593dc67fd},
		{7, 0xab0200f58b01d137},
		{8, 0x93f5f5799a932462},
		{15, 0xa129ca6149be45e5},
		{63, 0x958a324ceb064572},
	} {
		if got := sipHash24(&k, msg[:c.n]); got != c.want {
			t.Errorf("length %d: %#016x, want %#016x", c.n, got, c.want)
		}
	}
}
