package pb

// DataFrame wraps d in the Frame that carries it on the wire.
func DataFrame(d *Data) *Frame { return &Frame{Body: &Frame_Data{Data: d}} }

// AckFrame wraps a in the Frame that carries it on the wire.
func AckFrame(a *Ack) *Frame { return &Frame{Body: &Frame_Ack{Ack: a}} }
