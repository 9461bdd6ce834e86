"""Images: the wire shapes and their validation, the plan of a request and the metered flow it
goes through (reserve, send, price, deliver, settle), uploads, URL fetching and image storage."""
