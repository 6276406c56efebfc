package ocichain

import (
	"context"
	"fmt"
	"os"

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
