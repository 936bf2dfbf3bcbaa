DROP TABLE node_sandbox_image_availability;
DROP TABLE sandbox_image_versions;
DROP TABLE sandbox_images;
