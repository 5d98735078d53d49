package cms

import "errors"

// maxBERDepth bounds the nesting of constructed elements that normalizeBER
// follows (EnvelopedData needs about a dozen levels), which also bounds its
// recursion.
const maxBERDepth = 32

var errBER = errors.New("invalid BER")

// normalizeBER rewrites one BER element so that every length is in definite,
// minimal form (X.690 §8.1.3), which is what cryptobyte reads. Identifier
// octets and the contents of primitive elements are copied unchanged, and
// constructed elements stay constructed, so the raw bytes of an issuer Name
// are not altered. Indefinite lengths (RFC 5652 §2 permits BER for
// EnvelopedData) are resolved. The output is at most twice the input length.
func normalizeBER(in []byte) ([]byte, error) {
	if len(in) > maxInput {
		return nil, errBER
	}
	out, rest, err := berElement(make([]byte, 0, len(in)), in, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, errBER
	}
	return out, nil
}

// berElement appends the normalized form of the first element of src to dst
// and returns the remaining input.
func berElement(dst, src []byte, depth int) (out, rest []byte, err error) {
	if depth > maxBERDepth {
		return nil, nil, errBER
	}
	// Identifier octets (X.690 §8.1.2), high tag numbers included.
	idLen := 1
	if len(src) < 2 {
		return nil, nil, errBER
	}
	if src[0]&0x1f == 0x1f {
		for {
			if idLen >= len(src) || idLen > 5 {
				return nil, nil, errBER
			}
			b := src[idLen]
			idLen++
			if b&0x80 == 0 {
				break
			}
		}
	}
	id := src[:idLen]
	constructed := src[0]&0x20 != 0
	src = src[idLen:]

	// Length octets (X.690 §8.1.3).
	if len(src) < 1 {
		return nil, nil, errBER
	}
	lb := src[0]
	src = src[1:]
	indefinite := false
	length := 0
	switch {
	case lb < 0x80:
		length = int(lb)
	case lb == 0x80:
		if !constructed {
			return nil, nil, errBER // X.690 §8.1.3.2(a)
		}
		indefinite = true
	case lb == 0xff:
		return nil, nil, errBER // X.690 §8.1.3.5(c)
	default:
		n := int(lb & 0x7f)
		if n > 4 || n > len(src) {
			return nil, nil, errBER
		}
		for _, b := range src[:n] {
			length = length<<8 | int(b)
		}
		src = src[n:]
	}
	if !indefinite && (length < 0 || length > len(src)) {
		return nil, nil, errBER
	}

	if !constructed {
		dst = appendHeader(dst, id, length)
		return append(dst, src[:length]...), src[length:], nil
	}

	start := len(dst)
	if indefinite {
		for {
			if len(src) < 2 {
				return nil, nil, errBER
			}
			if src[0] == 0 && src[1] == 0 { // end-of-contents, X.690 §8.1.5
				src = src[2:]
				break
			}
			if dst, src, err = berElement(dst, src, depth+1); err != nil {
				return nil, nil, err
			}
		}
	} else {
		content := src[:length]
		src = src[length:]
		for len(content) > 0 {
			if dst, content, err = berElement(dst, content, depth+1); err != nil {
				return nil, nil, err
			}
		}
	}
	// The contents are now at dst[start:]; move them up to make room for
	// the header in front of them.
	n := len(dst) - start
	var hbuf [16]byte
	hdr := appendHeader(hbuf[:0], id, n)
	dst = append(dst, hdr...)
	copy(dst[start+len(hdr):], dst[start:start+n])
	copy(dst[start:], hdr)
	return dst, src, nil
}

// appendHeader appends identifier octets and a minimal definite length.
func appendHeader(dst, id []byte, n int) []byte {
	dst = append(dst, id...)
	switch {
	case n < 0x80:
		return append(dst, byte(n))
	case n <= 0xff:
		return append(dst, 0x81, byte(n))
	case n <= 0xffff:
		return append(dst, 0x82, byte(n>>8), byte(n))
	case n <= 0xffffff:
		return append(dst, 0x83, byte(n>>16), byte(n>>8), byte(n))
	default:
		return append(dst, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}
