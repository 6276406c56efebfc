package ocichain

import (
	"context"
	"fmt"
	"io"
	"os"

	"go.podman.io/storage/pkg/archive"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/oci"
)

// OpenLayout opens an OCI image layout directory (`skopeo … oci:DIR`),
// creating it when create is set.
func OpenLayout(ctx context.Context, dir string, create bool) (*oci.Store, error) {
	if !create {
		if _, err := os.Stat(dir + "/index.json"); err != nil {
			return nil, fmt.Errorf("%s is not an OCI image layout: %w", dir, err)
		}
	}
	s, err := oci.NewWithContext(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("OCI image layout %s: %w", dir, err)
	}
	return s, nil
}

// LayoutTags lists the tagged images of a layout.
func LayoutTags(ctx context.Context, s *oci.Store) ([]string, error) {
	var tags []string
	err := s.Tags(ctx, "", func(ts []string) error {
		tags = append(tags, ts...)
		return nil
	})
	return tags, err
}

// WriteLayoutTar writes the layout directory dir to w as a tar (an OCI
// layout archive, as `skopeo … oci-archive:` reads).
func WriteLayoutTar(dir string, w io.Writer) error {
	rc, err := archive.TarWithOptions(dir, &archive.TarOptions{Compression: archive.Uncompressed})
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(w, rc)
	return err
}

// CopyFromLayoutTar copies the image tagged tag from a layout archive
// (WriteLayoutTar) into the layout at dir, created if need be; its other
// images stay, blobs it has are not copied again.
func CopyFromLayoutTar(ctx context.Context, archivePath, dir, tag string) error {
	src, err := oci.NewFromTar(ctx, archivePath)
	if err != nil {
		return fmt.Errorf("the exported layout: %w", err)
	}
	dst, err := OpenLayout(ctx, dir, true)
	if err != nil {
		return err
	}
	if _, err := oras.Copy(ctx, src, tag, dst, tag, oras.DefaultCopyOptions); err != nil {
		return fmt.Errorf("adding %s to the OCI image layout %s: %w", tag, dir, err)
	}
	return nil
}
