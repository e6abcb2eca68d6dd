//! Interfaces, addresses, routes, sysctls and link monitoring over rtnetlink.
